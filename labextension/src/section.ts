import { Widget } from '@lumino/widgets';

import { IAnimusContext } from './api';
import { h, replace, Child } from './dom';

/**
 * What every panel knows: the context (who, which project, which role), or the
 * reason it could not be loaded.
 */
export class AnimusState {
  context: IAnimusContext | null = null;
  error: string | null = null;

  get project(): string | null {
    return this.context?.project ?? null;
  }

  get role(): string | null {
    return this.context?.role ?? null;
  }

  /** Called with the new state after each (re)load of the context. */
  onChange(listener: () => void): void {
    this._listeners.push(listener);
  }

  set(context: IAnimusContext | null, error: string | null): void {
    this.context = context;
    this.error = error;
    for (const listener of this._listeners) {
      listener();
    }
  }

  private _listeners: (() => void)[] = [];
}

/**
 * One panel of the sidebar: a header with a refresh button, a message line
 * (errors show the API's `message`) and a body the panel renders into.
 */
export abstract class Section extends Widget {
  constructor(
    protected readonly state: AnimusState,
    readonly sectionId: string,
    label: string
  ) {
    super();
    this.id = `animus-section-${sectionId}`;
    this.title.label = label;
    this.addClass('jp-AnimusSection');
    this.node.dataset.section = sectionId;

    const refresh = h('button', {
      class: 'jp-AnimusButton jp-AnimusSection-refresh',
      title: `Reload ${label}`,
      text: '↻',
      onclick: () => void this.refresh()
    });
    this.toolbarNode = h('div', { class: 'jp-AnimusSection-toolbar' }, refresh);
    this.messageNode = h('div', { class: 'jp-AnimusSection-message', role: 'alert' });
    this.bodyNode = h('div', { class: 'jp-AnimusSection-body' });
    this.node.append(this.toolbarNode, this.messageNode, this.bodyNode);
    state.onChange(() => void this.refresh());
  }

  /** Render the panel again from the API; failures show the API's message. */
  async refresh(): Promise<void> {
    this.showError(null);
    if (this.needsProject && !this.state.project) {
      this.empty(
        this.state.error
          ? `Animus is not reachable: ${this.state.error}`
          : `This workspace is not bound to a project. Open a project's workspace (Project panel) to see its ${this.title.label.toLowerCase()}.`
      );
      return;
    }
    try {
      await this.render();
    } catch (reason) {
      this.showError(reason);
    }
  }

  /** Show an error (its `message`, the API's text) above the body; null clears it. */
  showError(reason: unknown): void {
    if (reason === null || reason === undefined) {
      replace(this.messageNode);
      this.messageNode.classList.remove('jp-mod-error');
      return;
    }
    const message = reason instanceof Error ? reason.message : String(reason);
    replace(this.messageNode, message);
    this.messageNode.classList.add('jp-mod-error');
  }

  /** An empty state: the body shows `text`. */
  empty(text: string, ...extra: Child[]): void {
    replace(this.bodyNode, h('p', { class: 'jp-AnimusSection-empty', text }), ...extra);
  }

  /** A "← Label" button that runs `reset` (back to the panel's list) and renders the panel again. */
  protected backButton(reset: () => void): HTMLButtonElement {
    return h('button', {
      class: 'jp-AnimusButton jp-AnimusBack',
      text: `← ${this.title.label}`,
      onclick: () => {
        reset();
        void this.refresh();
      }
    });
  }

  /** Does the panel need the workspace's project? */
  protected needsProject = true;

  protected abstract render(): Promise<void>;

  protected readonly toolbarNode: HTMLDivElement;
  protected readonly messageNode: HTMLDivElement;
  protected readonly bodyNode: HTMLDivElement;
}
