/**
 * Small DOM helpers for the Animus panels: element creation, tables, formatting.
 */

export type Child = Node | string | number | null | undefined | false;

/**
 * Create an element: `h('button', {class: 'x', onclick: f}, 'Label')`.
 *
 * Attributes: `class`, `text`, `title`, `dataset` (an object), event handlers
 * (`onclick`, `onchange`, `oninput`, `onkeydown`), boolean properties
 * (`disabled`, `checked`) and any other string attribute.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, any> = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (key === 'class') {
      node.className = String(value);
    } else if (key === 'text') {
      node.textContent = String(value);
    } else if (key === 'dataset') {
      for (const [k, v] of Object.entries(value as Record<string, string>)) {
        node.dataset[k] = v;
      }
    } else if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value as EventListener);
    } else if (key === 'disabled' || key === 'checked') {
      (node as any)[key] = Boolean(value);
    } else {
      node.setAttribute(key, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node: Node, children: (Child | Child[])[]): void {
  for (const child of children) {
    if (Array.isArray(child)) {
      append(node, child);
    } else if (child !== null && child !== undefined && child !== false) {
      node.appendChild(
        typeof child === 'object' ? child : document.createTextNode(String(child))
      );
    }
  }
}

/** Replace every child of `node` with `children`. */
export function replace(node: HTMLElement, ...children: (Child | Child[])[]): void {
  node.textContent = '';
  append(node, children);
}

/** A table with a header row; `rows` are arrays of cells (strings or nodes). */
export function table(
  headers: string[],
  rows: Child[][],
  options: { class?: string; onRow?: (index: number) => void } = {}
): HTMLTableElement {
  return h(
    'table',
    { class: `jp-AnimusTable ${options.class ?? ''}`.trim() },
    h('thead', {}, h('tr', {}, headers.map(t => h('th', { text: t })))),
    h(
      'tbody',
      {},
      rows.map((cells, i) =>
        h(
          'tr',
          options.onRow
            ? { class: 'jp-mod-clickable', onclick: () => options.onRow!(i) }
            : {},
          cells.map(c => h('td', {}, c))
        )
      )
    )
  );
}

/** "2026-11-28 12:03" from an ISO time (local time), or "–". */
export function when(iso: string | null | undefined): string {
  if (!iso) {
    return '–';
  }
  const d = new Date(iso);
  if (isNaN(d.getTime())) {
    return iso;
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(
    d.getHours()
  )}:${pad(d.getMinutes())}`;
}

/** "1.2 MB" for a byte count. */
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) {
    return '–';
  }
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** A metric value as text (NaN and infinities as the API sends them). */
export function num(value: unknown): string {
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  }
  return value === null || value === undefined ? '–' : String(value);
}

/** The first 8 characters of an id or digest. */
export function short(id: string | null | undefined): string {
  if (!id) {
    return '–';
  }
  return id.replace(/^sha256:/, '').slice(0, 8);
}

/** A status badge (class `jp-AnimusStatus-<status>`). */
export function badge(status: string): HTMLSpanElement {
  return h('span', {
    class: `jp-AnimusStatus jp-AnimusStatus-${status}`,
    text: status
  });
}
