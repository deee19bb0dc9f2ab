import { InputDialog } from '@jupyterlab/apputils';

import { apiGet, apiPost, IPage, projectPath } from '../api';
import { badge, h, num, replace, short, table, when } from '../dom';
import { AnimusState, Section } from '../section';

interface IModel {
  name: string;
  description?: string;
  versions: number;
  versions_by_status: Record<string, number>;
}

/** "3 versions: 1 approved, 2 draft". */
function versionSummary(m: IModel): string {
  const parts = Object.entries(m.versions_by_status ?? {})
    .filter(([, n]) => n > 0)
    .map(([status, n]) => `${n} ${status}`);
  return `${m.versions} version${m.versions === 1 ? '' : 's'}${parts.length ? `: ${parts.join(', ')}` : ''}`;
}

interface IModelVersion {
  model: string;
  version: number;
  status: string;
  status_reason?: string | null;
  run_id: string | null;
  framework?: string | null;
  aliases: string[];
  metrics: Record<string, { value: number | string | null }>;
  created_at: string;
  created_by: string;
}

/** One verdict of `GET .../versions/{v}/actions`. */
export interface IAction {
  action: 'transition' | 'approve';
  to: string;
  allowed: boolean;
  code: string | null;
  reason: string | null;
  approvals_required?: number;
  reason_required?: boolean;
  requested_by?: string;
}

interface IActions {
  status: string;
  policy_version: number | null;
  pending_request: { to_status: string; requested_by: string; required_approvals: number } | null;
  actions: IAction[];
}

/** The label of an action's button. */
export function actionLabel(a: IAction): string {
  if (a.action === 'approve') {
    return `Approve → ${a.to}`;
  }
  return a.approvals_required ? `Request ${a.to}` : `Move to ${a.to}`;
}

/**
 * Models: the project's models and versions; a version's promotion actions,
 * each disabled with the promotion policy's reason when it may not be taken now.
 */
export class ModelsSection extends Section {
  constructor(state: AnimusState) {
    super(state, 'models', 'Models');
  }

  protected async render(): Promise<void> {
    if (this.open) {
      return this.renderModel(this.open.model, this.open.version);
    }
    const project = this.state.project!;
    const page = await apiGet<IPage<IModel>>(projectPath(project, 'models'), { limit: 200 });
    if (!page.items.length) {
      this.empty(`Project ${project} has no registered models. Register one with: animus models register --help`);
      return;
    }
    replace(
      this.bodyNode,
      table(
        ['Model', 'Versions'],
        page.items.map(m => [
          h('span', { dataset: { animus: 'model' }, title: m.description ?? '' }, m.name),
          versionSummary(m)
        ]),
        {
          onRow: i => {
            this.open = { model: page.items[i].name, version: null };
            void this.refresh();
          }
        }
      )
    );
  }

  private async renderModel(model: string, selected: number | null): Promise<void> {
    const project = this.state.project!;
    const versions = await apiGet<IPage<IModelVersion>>(projectPath(project, 'models', model, 'versions'), {
      limit: 100
    });
    const back = this.backButton(() => (this.open = null));
    const list = table(
      ['Version', 'Status', 'Aliases', 'Created'],
      versions.items.map(v => [`v${v.version}`, badge(v.status), v.aliases.join(', ') || '–', when(v.created_at)]),
      {
        onRow: i => {
          this.open = { model, version: versions.items[i].version };
          void this.refresh();
        }
      }
    );
    const nodes: Node[] = [back, h('h4', { class: 'jp-AnimusSubheading', text: model }), list];
    const version = selected ?? versions.items[0]?.version ?? null;
    if (version !== null) {
      nodes.push(await this.renderVersion(model, version));
    }
    replace(this.bodyNode, ...nodes);
  }

  private async renderVersion(model: string, version: number): Promise<HTMLElement> {
    const project = this.state.project!;
    const [v, verdict] = await Promise.all([
      apiGet<IModelVersion>(projectPath(project, 'models', model, 'versions', version)),
      apiGet<IActions>(projectPath(project, 'models', model, 'versions', version, 'actions'))
    ]);
    const metrics = Object.entries(v.metrics ?? {});
    const pending = verdict.pending_request;
    const actions = verdict.actions.map(a =>
      h(
        'div',
        { class: 'jp-AnimusAction', dataset: { animus: 'promotion-action', action: a.action, to: a.to } },
        h('button', {
          class: `jp-AnimusButton ${a.action === 'approve' ? 'jp-mod-accept' : ''}`,
          text: actionLabel(a),
          disabled: !a.allowed,
          title: a.allowed ? actionLabel(a) : a.reason ?? '',
          onclick: () => void this.act(model, version, a)
        }),
        a.allowed ? null : h('div', { class: 'jp-AnimusReason', dataset: { animus: 'promotion-reason' }, text: a.reason ?? '' })
      )
    );
    return h(
      'div',
      { class: 'jp-AnimusDetail', dataset: { animus: 'model-version' } },
      h('h4', { class: 'jp-AnimusSubheading' }, `${model} v${version} `, badge(v.status)),
      v.status_reason ? h('p', { class: 'jp-AnimusMuted', text: v.status_reason }) : null,
      h(
        'dl',
        { class: 'jp-AnimusFacts' },
        h('dt', { text: 'From run' }),
        h('dd', { class: 'jp-AnimusMono', text: short(v.run_id) }),
        h('dt', { text: 'Framework' }),
        h('dd', { text: v.framework ?? '–' }),
        h('dt', { text: 'Created by' }),
        h('dd', { text: v.created_by }),
        ...metrics.flatMap(([k, m]) => [h('dt', { text: k }), h('dd', { text: num(m?.value) })])
      ),
      pending
        ? h('p', {
            class: 'jp-AnimusNotice',
            text: `${pending.requested_by} asked to move it to ${pending.to_status}; ${pending.required_approvals} approval(s) needed.`
          })
        : null,
      h('h4', {
        class: 'jp-AnimusSubheading',
        text: `Promotion (policy ${verdict.policy_version === null ? 'built-in' : `v${verdict.policy_version}`})`
      }),
      actions.length ? h('div', { class: 'jp-AnimusActions jp-mod-column' }, actions) : h('p', { class: 'jp-AnimusMuted', text: `${v.status} is final.` })
    );
  }

  private async act(model: string, version: number, a: IAction): Promise<void> {
    const project = this.state.project!;
    const asked = await InputDialog.getText({
      title: `${actionLabel(a)}: ${model} v${version}`,
      label: a.reason_required ? 'Reason (required)' : 'Reason (optional)',
      placeholder: a.action === 'approve' ? 'looks good' : 'why this version'
    });
    if (!asked.button.accept) {
      return;
    }
    const reason = (asked.value ?? '').trim();
    this.showError(null);
    try {
      if (a.action === 'approve') {
        await apiPost(projectPath(project, 'models', model, 'versions', version, 'approvals'), { reason });
      } else {
        await apiPost(projectPath(project, 'models', model, 'versions', version, 'transitions'), { to: a.to, reason });
      }
      await this.refresh();
    } catch (reason) {
      await this.refresh();
      this.showError(reason);
    }
  }

  private open: { model: string; version: number | null } | null = null;
}
