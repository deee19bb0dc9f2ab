import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { CommandRegistry } from '@lumino/commands';

import { h, replace } from '../dom';
import { AnimusState, Section } from '../section';

/**
 * Project: the workspace's project, your role and template, buttons for VS Code
 * and a terminal, and your other projects (each opens its own workspace).
 */
export class ProjectSection extends Section {
  constructor(state: AnimusState, private readonly commands: CommandRegistry) {
    super(state, 'project', 'Project');
    this.needsProject = false;
  }

  protected async render(): Promise<void> {
    const ctx = this.state.context;
    if (!ctx) {
      this.empty(`Animus is not reachable: ${this.state.error ?? 'no answer'}`);
      return;
    }
    if (ctx.api_error) {
      this.showError(ctx.api_error);
    }
    const current = ctx.project;
    const info = ctx.project_info;
    const vscodeUrl = URLExt.join(PageConfig.getBaseUrl(), 'vscode/');
    const header = current
      ? h(
          'div',
          { class: 'jp-AnimusProject-current' },
          h('div', { class: 'jp-AnimusProject-name', dataset: { animus: 'project-name' } }, info?.display_name || current),
          info?.description ? h('div', { class: 'jp-AnimusMuted', text: info.description }) : null,
          h(
            'dl',
            { class: 'jp-AnimusFacts' },
            h('dt', { text: 'You' }),
            h('dd', { dataset: { animus: 'project-user' } }, `${ctx.me?.name ?? ctx.user ?? '–'} (${ctx.role ?? 'no role'})`),
            h('dt', { text: 'Template' }),
            h('dd', { text: ctx.workspace.template ?? 'default' }),
            h('dt', { text: 'Folder' }),
            h('dd', { class: 'jp-AnimusMono', text: ctx.workspace.folder })
          )
        )
      : h('p', {
          class: 'jp-AnimusSection-empty',
          text: 'This workspace is not bound to a project: open a project below to work in it.'
        });
    const tools = h(
      'div',
      { class: 'jp-AnimusActions' },
      h('button', {
        class: 'jp-AnimusButton',
        text: 'Open VS Code',
        title: 'VS Code in the browser, on this workspace’s folder',
        onclick: () => window.open(vscodeUrl, '_blank')
      }),
      h('button', {
        class: 'jp-AnimusButton',
        text: 'New terminal',
        title: 'A terminal with the animus CLI, signed in as you',
        onclick: () => void this.commands.execute('terminal:create-new')
      })
    );
    const others = ctx.projects.filter(p => p.slug !== current);
    const spawn = ctx.hub.spawn_url;
    const list = others.length
      ? h(
          'ul',
          { class: 'jp-AnimusList', dataset: { animus: 'project-list' } },
          others.map(p =>
            h(
              'li',
              {},
              spawn
                ? h('a', {
                    href: spawn + encodeURIComponent(p.slug),
                    target: '_blank',
                    title: `Start (or reopen) project ${p.slug}'s workspace`,
                    text: p.display_name || p.slug
                  })
                : p.display_name || p.slug
            )
          )
        )
      : h('p', { class: 'jp-AnimusMuted', text: 'You are not a member of other projects.' });
    replace(
      this.bodyNode,
      header,
      tools,
      h('h4', { class: 'jp-AnimusSubheading', text: current ? 'Open another project' : 'Your projects' }),
      list
    );
  }
}
