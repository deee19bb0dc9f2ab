import uPlot from 'uplot';

import { apiGet, IPage, projectPath } from '../api';
import { lineChart } from '../chart';
import { badge, h, num, replace, short, table, when } from '../dom';
import { AnimusState, Section } from '../section';

export interface IRun {
  id: string;
  name: string | null;
  kind: string;
  status: string;
  start_time: string | null;
  user: string | null;
  params?: Record<string, string>;
  metrics?: Record<string, { value: number | string | null; step: number }>;
}

interface ICompare {
  runs: IRun[];
  params: Record<string, Record<string, string | null>>;
  params_differ: string[];
  metrics: Record<string, Record<string, { value: number | string | null } | null>>;
  histories: Record<string, Record<string, { points: { step: number; value: number | string | null }[] }>>;
}

/** A run's display name. */
export function runLabel(run: IRun): string {
  return run.name || short(run.id);
}

/**
 * Experiments: the project's runs with a filter box in the search language;
 * select runs and compare them (parameters that differ and metric charts).
 */
export class ExperimentsSection extends Section {
  constructor(state: AnimusState) {
    super(state, 'experiments', 'Experiments');
    this.filterInput = h('input', {
      class: 'jp-AnimusInput',
      type: 'search',
      placeholder: "metrics.acc > 0.9 and params.model = 'rf'",
      title: 'A filter in the search language (docs/how-to/tracking.md); Enter to search',
      dataset: { animus: 'run-filter' },
      onkeydown: (e: KeyboardEvent) => {
        if (e.key === 'Enter') {
          void this.refresh();
        }
      }
    });
    this.compareButton = h('button', {
      class: 'jp-AnimusButton jp-mod-accept',
      text: 'Compare',
      disabled: true,
      title: 'Select two or more runs',
      dataset: { animus: 'compare' },
      onclick: () => void this.compare()
    });
    this.listNode = h('div', { class: 'jp-AnimusRuns' });
    this.compareNode = h('div', { class: 'jp-AnimusCompare', dataset: { animus: 'compare-result' } });
  }

  protected async render(): Promise<void> {
    const project = this.state.project!;
    const filter = this.filterInput.value.trim();
    const page = await apiGet<IPage<IRun>>(projectPath(project, 'runs'), { filter, limit: 100 });
    this.runs = page.items;
    this.selected = new Set([...this.selected].filter(id => this.runs.some(r => r.id === id)));
    const form = h('div', { class: 'jp-AnimusFilter' }, this.filterInput, this.compareButton);
    if (!this.runs.length) {
      replace(this.listNode, h('p', { class: 'jp-AnimusSection-empty', text: filter ? 'No run matches this filter.' : `Project ${project} has no runs yet. Log one with animus.start_run() or MLflow.` }));
    } else {
      const keys = Array.from(new Set(this.runs.flatMap(r => Object.keys(r.metrics ?? {})))).sort().slice(0, 2);
      replace(
        this.listNode,
        table(
          ['', 'Run', 'Status', ...keys],
          this.runs.map(r => [
            h('input', {
              type: 'checkbox',
              checked: this.selected.has(r.id),
              title: 'Select to compare',
              dataset: { animus: 'run-select', run: r.id },
              onchange: (e: Event) => this.select(r.id, (e.target as HTMLInputElement).checked)
            }),
            h(
              'span',
              { dataset: { animus: 'run-name' }, title: `${r.id}, started ${when(r.start_time)} by ${r.user ?? '–'}` },
              runLabel(r)
            ),
            badge(r.status),
            ...keys.map(k => num(r.metrics?.[k]?.value))
          ])
        )
      );
    }
    this.updateCompareButton();
    replace(this.bodyNode, form, this.listNode, this.compareNode);
  }

  private select(id: string, on: boolean): void {
    if (on) {
      this.selected.add(id);
    } else {
      this.selected.delete(id);
    }
    this.updateCompareButton();
  }

  private updateCompareButton(): void {
    this.compareButton.disabled = this.selected.size < 2;
    this.compareButton.title = this.selected.size < 2 ? 'Select two or more runs' : `Compare ${this.selected.size} runs`;
  }

  private async compare(): Promise<void> {
    const project = this.state.project!;
    this.showError(null);
    try {
      const result = await apiGet<ICompare>(projectPath(project, 'runs', 'compare'), {
        run_id: [...this.selected],
        max_points: 500
      });
      this.drawComparison(result);
    } catch (reason) {
      this.showError(reason);
    }
  }

  private drawComparison(result: ICompare): void {
    for (const chart of this.charts) {
      chart.destroy();
    }
    this.charts = [];
    const labels = new Map(result.runs.map(r => [r.id, runLabel(r)]));
    const differ = result.params_differ.length
      ? table(
          ['Parameter', ...result.runs.map(runLabel)],
          result.params_differ.map(k => [k, ...result.runs.map(r => result.params[k][r.id] ?? '–')]),
          { class: 'jp-AnimusTable-compact' }
        )
      : h('p', { class: 'jp-AnimusMuted', text: 'The runs have the same parameters.' });
    const charts = h('div', { class: 'jp-AnimusCharts' });
    replace(this.compareNode, h('h4', { class: 'jp-AnimusSubheading', text: 'Comparison' }), differ, charts);
    const keys = Object.keys(result.histories);
    // a metric logged once per run is a number to compare, not a curve
    const curves = keys.filter(k => result.runs.some(r => (result.histories[k][r.id]?.points.length ?? 0) > 1));
    const single = keys.filter(k => !curves.includes(k));
    if (single.length) {
      charts.append(
        table(
          ['Metric', ...result.runs.map(runLabel)],
          single.map(k => [k, ...result.runs.map(r => num(result.metrics[k]?.[r.id]?.value))]),
          { class: 'jp-AnimusTable-compact' }
        )
      );
    }
    if (!keys.length) {
      charts.append(h('p', { class: 'jp-AnimusMuted', text: 'The runs have no metrics to chart.' }));
      return;
    }
    const width = this.compareNode.clientWidth || this.node.clientWidth || 300;
    for (const key of curves) {
      const box = h('div', { class: 'jp-AnimusChart', dataset: { animus: 'chart', metric: key } });
      charts.append(box);
      const series = result.runs.map(r => ({
        label: labels.get(r.id)!,
        points: result.histories[key][r.id]?.points ?? []
      }));
      this.charts.push(lineChart(box, key, series, width - 8));
    }
  }

  private readonly filterInput: HTMLInputElement;
  private readonly compareButton: HTMLButtonElement;
  private readonly listNode: HTMLDivElement;
  private readonly compareNode: HTMLDivElement;
  private runs: IRun[] = [];
  private selected = new Set<string>();
  private charts: uPlot[] = [];
}
