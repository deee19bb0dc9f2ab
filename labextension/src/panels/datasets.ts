import { Clipboard } from '@jupyterlab/apputils';

import { apiGet, IPage, projectPath } from '../api';
import { bytes, h, replace, short, table, when } from '../dom';
import { AnimusState, Section } from '../section';

interface IDataset {
  name: string;
  description?: string;
  restricted: boolean;
  latest_version: number | null;
}

interface IVersion {
  dataset: string;
  version: number;
  digest: string;
  file_count: number;
  total_size: number;
  message?: string;
  committed_at?: string;
  committed_by?: string;
  produced_by_run_id?: string | null;
  consumed_by_runs?: string[];
}

interface IColumn {
  name: string;
  type?: string;
  nulls?: number;
  min?: unknown;
  max?: unknown;
  mean?: number | null;
  distinct?: number;
}

interface IProfile {
  path: string;
  format: string;
  rows: number;
  columns: IColumn[];
}

/** The Python that loads a dataset version in a notebook (recorded as the active run's input). */
export function loadingSnippet(dataset: string, version: number): string {
  return [
    'import animus.datasets as ads',
    '',
    `data = ads.get(${JSON.stringify(dataset)}, version=${version})  # an input of the active run`,
    'df = data.to_pandas()  # CSV, JSON lines or Parquet; data.download("data/") for the files'
  ].join('\n');
}

/**
 * Datasets: the project's datasets, their versions, each version's schema,
 * statistics and lineage, and a "copy loading snippet" button.
 */
export class DatasetsSection extends Section {
  constructor(state: AnimusState) {
    super(state, 'datasets', 'Datasets');
  }

  protected async render(): Promise<void> {
    if (this.open) {
      return this.renderDataset(this.open.name, this.open.version);
    }
    const project = this.state.project!;
    const page = await apiGet<IPage<IDataset>>(projectPath(project, 'datasets'), { limit: 200 });
    if (!page.items.length) {
      this.empty(
        `Project ${project} has no datasets yet. Push one with: animus datasets push NAME ./folder`
      );
      return;
    }
    replace(
      this.bodyNode,
      table(
        ['Dataset', 'Latest', ''],
        page.items.map(d => [
          h('span', { class: 'jp-AnimusLink', dataset: { animus: 'dataset' } }, d.name),
          d.latest_version ? `v${d.latest_version}` : '–',
          d.restricted ? h('span', { class: 'jp-AnimusMuted', title: 'Restricted to reader groups', text: 'restricted' }) : ''
        ]),
        {
          onRow: i => {
            this.open = { name: page.items[i].name, version: page.items[i].latest_version };
            void this.refresh();
          }
        }
      )
    );
  }

  private async renderDataset(name: string, selected: number | null): Promise<void> {
    const project = this.state.project!;
    const versions = await apiGet<IPage<IVersion>>(projectPath(project, 'datasets', name, 'versions'), {
      limit: 100
    });
    const back = this.backButton(() => (this.open = null));
    const rows = versions.items.map(v => [
      `v${v.version}`,
      `${v.file_count} file${v.file_count === 1 ? '' : 's'}, ${bytes(v.total_size)}`,
      h('span', { title: `by ${v.committed_by ?? '–'}` }, when(v.committed_at))
    ]);
    const nodes: (Node | string)[] = [
      back,
      h('h4', { class: 'jp-AnimusSubheading', text: name }),
      table(['Version', 'Content', 'Committed'], rows, {
        onRow: i => {
          this.open = { name, version: versions.items[i].version };
          void this.refresh();
        }
      })
    ];
    const version = selected ?? versions.items[0]?.version ?? null;
    if (version !== null) {
      nodes.push(await this.renderVersion(name, version));
    }
    replace(this.bodyNode, ...nodes);
  }

  private async renderVersion(name: string, version: number): Promise<HTMLElement> {
    const project = this.state.project!;
    const [v, schema] = await Promise.all([
      apiGet<IVersion>(projectPath(project, 'datasets', name, 'versions', version)),
      apiGet<IPage<IProfile>>(projectPath(project, 'datasets', name, 'versions', version, 'schema'), { limit: 20 })
    ]);
    const copy = h('button', {
      class: 'jp-AnimusButton jp-mod-accept',
      text: 'Copy loading snippet',
      dataset: { animus: 'copy-snippet' },
      onclick: () => {
        Clipboard.copyToSystem(loadingSnippet(name, version));
        copy.textContent = 'Copied';
        window.setTimeout(() => (copy.textContent = 'Copy loading snippet'), 1500);
      }
    });
    const lineage = h(
      'dl',
      { class: 'jp-AnimusFacts' },
      h('dt', { text: 'Digest' }),
      h('dd', { class: 'jp-AnimusMono', title: v.digest, text: short(v.digest) }),
      h('dt', { text: 'Produced by' }),
      h('dd', { class: 'jp-AnimusMono', text: v.produced_by_run_id ? short(v.produced_by_run_id) : 'an upload' }),
      h('dt', { text: 'Used by' }),
      h(
        'dd',
        { class: 'jp-AnimusMono' },
        v.consumed_by_runs?.length ? v.consumed_by_runs.map(short).join(', ') : 'no run yet'
      ),
      v.message ? [h('dt', { text: 'Message' }), h('dd', { text: v.message })] : null
    );
    const profiles = schema.items.length
      ? schema.items.map(p =>
          h(
            'div',
            { class: 'jp-AnimusProfile' },
            h('div', { class: 'jp-AnimusMono', text: `${p.path} · ${p.format} · ${p.rows} rows` }),
            table(
              ['Column', 'Type', 'Nulls', 'Range', 'Distinct'],
              p.columns.map(c => [
                c.name,
                c.type ?? '–',
                String(c.nulls ?? '–'),
                c.min === undefined && c.max === undefined ? '–' : `${c.min ?? '–'} … ${c.max ?? '–'}`,
                String(c.distinct ?? '–')
              ]),
              { class: 'jp-AnimusTable-compact' }
            )
          )
        )
      : [h('p', { class: 'jp-AnimusMuted', text: 'No tabular files (CSV, JSON lines, Parquet) to profile.' })];
    return h(
      'div',
      { class: 'jp-AnimusDetail', dataset: { animus: 'dataset-version' } },
      h('h4', { class: 'jp-AnimusSubheading', text: `${name} v${version}` }),
      copy,
      lineage,
      h('h4', { class: 'jp-AnimusSubheading', text: 'Schema and statistics' }),
      ...profiles
    );
  }

  private open: { name: string; version: number | null } | null = null;
}
