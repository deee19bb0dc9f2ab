import { apiGet, apiPost, IPage, projectPath } from '../api';
import { badge, h, replace, short, table, when } from '../dom';
import { AnimusState, Section } from '../section';
import { IRun, runLabel } from './experiments';

const ACTIVE = new Set(['queued', 'starting', 'running']);
/** How often an open run's log and status are polled, in milliseconds. */
const POLL_MS = 2000;

interface IJob {
  run_id: string;
  status: string;
  command: string[] | string;
  code: { repo_url: string | null; commit_sha: string | null; ref: string | null };
  environment: { name?: string; version?: number } | null;
  attempt: number;
  exit_code: number | null;
}

interface ILogs {
  items: { id: number; attempt: number; text: string }[];
  next: number;
  status: string;
  truncated?: boolean;
}

/**
 * Runs: the project's batch runs (queue first), one run's live log, cancel and re-run.
 */
export class RunsSection extends Section {
  constructor(state: AnimusState) {
    super(state, 'runs', 'Runs');
  }

  dispose(): void {
    this.stopPolling();
    super.dispose();
  }

  protected async render(): Promise<void> {
    this.stopPolling();
    if (this.openRun) {
      return this.renderRun(this.openRun);
    }
    const project = this.state.project!;
    const page = await apiGet<IPage<IRun>>(projectPath(project, 'runs'), {
      filter: "attributes.kind = 'batch'",
      limit: 100
    });
    if (!page.items.length) {
      this.empty(`Project ${project} has no batch runs. Submit one with: animus runs submit --help`);
      return;
    }
    const runs = [...page.items].sort((a, b) => Number(ACTIVE.has(b.status)) - Number(ACTIVE.has(a.status)));
    replace(
      this.bodyNode,
      table(
        ['Run', 'Status', 'By', 'Started'],
        runs.map(r => [h('span', { dataset: { animus: 'batch-run' }, title: r.id }, runLabel(r)), badge(r.status), r.user ?? '–', when(r.start_time)]),
        {
          onRow: i => {
            this.openRun = runs[i].id;
            void this.refresh();
          }
        }
      )
    );
  }

  private async renderRun(runId: string): Promise<void> {
    const project = this.state.project!;
    const job = await apiGet<IJob>(projectPath(project, 'runs', runId, 'job'));
    const back = this.backButton(() => (this.openRun = null));
    const statusNode = h('span', {}, badge(job.status));
    const active = ACTIVE.has(job.status);
    const cancel = h('button', {
      class: 'jp-AnimusButton jp-mod-warn',
      text: 'Cancel',
      disabled: !active,
      title: active ? 'Stop this run' : 'The run has ended',
      onclick: () => void this.act(runId, 'cancel', {})
    });
    const rerun = h('button', {
      class: 'jp-AnimusButton',
      text: 'Re-run',
      title: 'Queue the identical run again: same commit, environment, data, params and seed',
      onclick: () => void this.act(runId, 'reproduce', {})
    });
    const command = Array.isArray(job.command) ? job.command.join(' ') : job.command;
    this.logNode = h('pre', { class: 'jp-AnimusLog', dataset: { animus: 'run-log' } });
    replace(
      this.bodyNode,
      back,
      h('h4', { class: 'jp-AnimusSubheading' }, `Run ${short(runId)} `, statusNode),
      h(
        'dl',
        { class: 'jp-AnimusFacts' },
        h('dt', { text: 'Command' }),
        h('dd', { class: 'jp-AnimusMono', text: command }),
        h('dt', { text: 'Commit' }),
        h('dd', { class: 'jp-AnimusMono', title: job.code.repo_url ?? '', text: short(job.code.commit_sha) }),
        h('dt', { text: 'Attempt' }),
        h('dd', { text: String(job.attempt) + (job.exit_code !== null ? `, exit code ${job.exit_code}` : '') })
      ),
      h('div', { class: 'jp-AnimusActions' }, cancel, rerun),
      this.logNode
    );
    this.logAfter = 0;
    await this.pollLog(runId, statusNode, cancel);
  }

  private async pollLog(runId: string, statusNode: HTMLElement, cancel: HTMLButtonElement): Promise<void> {
    const project = this.state.project!;
    try {
      const logs = await apiGet<ILogs>(projectPath(project, 'runs', runId, 'logs'), { after: this.logAfter });
      if (this.openRun !== runId || !this.logNode) {
        return;
      }
      for (const chunk of logs.items) {
        this.logNode.append(chunk.text);
      }
      this.logAfter = logs.next ?? this.logAfter;
      replace(statusNode, badge(logs.status));
      const active = ACTIVE.has(logs.status);
      cancel.disabled = !active;
      if (active || logs.items.length) {
        this.timer = window.setTimeout(() => void this.pollLog(runId, statusNode, cancel), POLL_MS);
      }
    } catch (reason) {
      this.showError(reason);
    }
  }

  private async act(runId: string, what: 'cancel' | 'reproduce', body: unknown): Promise<void> {
    const project = this.state.project!;
    this.showError(null);
    try {
      const answer = await apiPost<{ id?: string; run?: { id: string } }>(projectPath(project, 'runs', runId, what), body);
      if (what === 'reproduce') {
        this.openRun = answer.run?.id ?? answer.id ?? runId;
      }
      await this.refresh();
    } catch (reason) {
      this.showError(reason);
    }
  }

  private stopPolling(): void {
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private openRun: string | null = null;
  private logNode: HTMLPreElement | null = null;
  private logAfter = 0;
  private timer: number | null = null;
}
