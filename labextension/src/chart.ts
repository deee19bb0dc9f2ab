import uPlot from 'uplot';

/** One line of a chart: a label and its (step, value) points in step order. */
export interface ISeries {
  label: string;
  points: { step: number; value: number | string | null }[];
}

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

function cssVar(name: string, fallback: string): string {
  const value = getComputedStyle(document.body).getPropertyValue(name).trim();
  return value || fallback;
}

/**
 * Align series on the union of their steps (uPlot's data layout); missing
 * points and non-finite values are gaps.
 */
export function align(series: ISeries[]): [number[], ...(number | null)[][]] {
  const steps = Array.from(new Set(series.flatMap(s => s.points.map(p => p.step)))).sort((a, b) => a - b);
  const index = new Map(steps.map((s, i) => [s, i]));
  const columns = series.map(s => {
    const column: (number | null)[] = new Array(steps.length).fill(null);
    for (const p of s.points) {
      const v = typeof p.value === 'number' && Number.isFinite(p.value) ? p.value : null;
      column[index.get(p.step)!] = v;
    }
    return column;
  });
  return [steps, ...columns];
}

/**
 * Draw a line chart of `series` against the step into `container`, in the
 * theme's colours. Returns the uPlot instance (destroy it before drawing again).
 */
export function lineChart(container: HTMLElement, title: string, series: ISeries[], width: number): uPlot {
  const axis = cssVar('--jp-ui-font-color1', '#333');
  const grid = cssVar('--jp-border-color2', '#ddd');
  const opts: uPlot.Options = {
    title,
    width: Math.max(200, width),
    height: 220,
    scales: { x: { time: false } },
    legend: { live: false },
    axes: [
      { stroke: axis, grid: { stroke: grid, width: 1 } },
      { stroke: axis, grid: { stroke: grid, width: 1 } }
    ],
    series: [
      { label: 'step' },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: PALETTE[i % PALETTE.length],
        width: 2,
        spanGaps: true,
        points: { show: s.points.length < 50 }
      }))
    ]
  };
  return new uPlot(opts, align(series) as uPlot.AlignedData, container);
}
