import { requestAPI } from './handler';

/**
 * Calls to animus-api through the server extension (`<base>/animus/api/...`),
 * which forwards them as the workspace's owner.
 */

/** A path segment, encoded. */
export function seg(value: string | number): string {
  return encodeURIComponent(String(value));
}

/** Query string from pairs; arrays repeat the key; empty values are left out. */
export function query(params: Record<string, unknown>): string {
  const out = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') {
      continue;
    }
    for (const v of Array.isArray(value) ? value : [value]) {
      out.append(key, String(v));
    }
  }
  const text = out.toString();
  return text ? `?${text}` : '';
}

export function apiGet<T>(path: string, params: Record<string, unknown> = {}): Promise<T> {
  return requestAPI<T>(`api/${path}${query(params)}`);
}

export function apiPost<T>(path: string, body: unknown = {}): Promise<T> {
  const key =
    typeof crypto !== 'undefined' && 'randomUUID' in crypto
      ? crypto.randomUUID()
      : `${Date.now()}-${Math.random()}`;
  return requestAPI<T>(`api/${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json', 'Idempotency-Key': key }
  });
}

/** A page of a list endpoint. */
export interface IPage<T> {
  items: T[];
  next_cursor?: string | null;
}

/** What `GET animus/context` answers. */
export interface IAnimusContext {
  user: string | null;
  project: string | null;
  workspace: { server_name: string; template: string | null; folder: string };
  hub: { home_url: string; spawn_url: string | null };
  me: { name: string; kind: string; groups?: string[]; admin?: boolean } | null;
  projects: { slug: string; display_name: string }[];
  role: string | null;
  project_info: { slug: string; display_name?: string; description?: string } | null;
  api_error: string | null;
}

export function loadContext(): Promise<IAnimusContext> {
  return requestAPI<IAnimusContext>('context');
}

/** The path of a project's resource below /api/v1/. */
export function projectPath(project: string, ...rest: (string | number)[]): string {
  return ['projects', seg(project), ...rest.map(seg)].join('/');
}
