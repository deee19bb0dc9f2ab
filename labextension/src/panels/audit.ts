import { apiGet, IPage, projectPath } from '../api';
import { h, replace, table, when } from '../dom';
import { AnimusState, Section } from '../section';

interface IEvent {
  seq: number;
  time: string;
  actor: string;
  actor_kind: string;
  action: string;
  resource: string;
  outcome: string;
}

/**
 * Audit: the project's audit events, newest first (project owners only, as the API rules).
 */
export class AuditSection extends Section {
  constructor(state: AnimusState) {
    super(state, 'audit', 'Audit');
  }

  protected async render(): Promise<void> {
    const project = this.state.project!;
    if (this.state.role !== 'owner') {
      this.empty(`Only owners of project ${project} see its audit trail; your role is ${this.state.role ?? 'none'}.`);
      return;
    }
    const page = await apiGet<IPage<IEvent>>(projectPath(project, 'audit', 'events'), { limit: 50, order: 'desc' });
    if (!page.items.length) {
      this.empty('No audit events yet.');
      return;
    }
    replace(
      this.bodyNode,
      table(
        ['Time', 'Who', 'Action', 'Outcome'],
        page.items.map(e => [
          when(e.time),
          e.actor,
          h('span', { title: e.resource, text: e.action }),
          h('span', { class: `jp-AnimusOutcome-${e.outcome}`, text: e.outcome })
        ]),
        { class: 'jp-AnimusTable-compact' }
      )
    );
  }
}
