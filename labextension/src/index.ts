import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { requestAPI } from './handler';

const PLUGIN_ID = '@animus-datalab/labextension:sidebar';
const SIDEBAR_ID = 'animus-sidebar';
const OPEN_COMMAND = 'animus:open-sidebar';
const NO_PROJECT = 'No project selected';

const animusSvg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2 3 21h4.2l1.7-4h6.2l1.7 4H21L12 2zm-1.6 11.5L12 9.6l1.6 3.9h-3.2z"/>
  </g>
</svg>`;

export const animusIcon = new LabIcon({
  name: '@animus-datalab/labextension:animus',
  svgstr: animusSvg
});

/**
 * The part of `GET animus/context` the sidebar reads. The project may be
 * given as its slug or as an object.
 */
export interface IAnimusContext {
  project?: string | { slug?: string; name?: string } | null;
}

/**
 * The sections of the panel, each with the text shown while it has no content.
 */
const SECTIONS: ReadonlyArray<{ id: string; title: string; empty: string }> = [
  {
    id: 'project',
    title: 'Project',
    empty:
      'Project details will appear here once this workspace is linked to a project.'
  },
  {
    id: 'datasets',
    title: 'Datasets',
    empty: 'Datasets will appear here once the Datasets service is enabled.'
  },
  {
    id: 'experiments',
    title: 'Experiments',
    empty:
      'Experiments will appear here once the Experiments service is enabled.'
  },
  {
    id: 'runs',
    title: 'Runs',
    empty: 'Runs will appear here once the Runs service is enabled.'
  },
  {
    id: 'models',
    title: 'Models',
    empty: 'Models will appear here once the Models service is enabled.'
  },
  {
    id: 'audit',
    title: 'Audit',
    empty: 'Audit events will appear here once the Audit service is enabled.'
  }
];

/**
 * Return a display name for the project of a context, or null if none is set.
 */
export function projectName(context: IAnimusContext | null): string | null {
  const project = context?.project;
  if (!project) {
    return null;
  }
  if (typeof project === 'string') {
    return project;
  }
  return project.name || project.slug || null;
}

/**
 * The left sidebar panel of Animus.
 */
export class AnimusSidebar extends Widget {
  constructor() {
    super();
    this.id = SIDEBAR_ID;
    this.addClass('jp-AnimusSidebar');
    this.title.icon = animusIcon;
    this.title.caption = 'Animus';

    const heading = document.createElement('h2');
    heading.className = 'jp-AnimusSidebar-heading';
    heading.textContent = 'Animus';
    this.node.appendChild(heading);

    this._projectNode = document.createElement('div');
    this._projectNode.className = 'jp-AnimusSidebar-project';
    this.node.appendChild(this._projectNode);
    // The server may have put the project into the page config already.
    this.setProject(PageConfig.getOption('animusProject') || null);

    for (const section of SECTIONS) {
      const node = document.createElement('section');
      node.className = 'jp-AnimusSidebar-section';
      node.dataset.section = section.id;

      const title = document.createElement('h3');
      title.className = 'jp-AnimusSidebar-sectionTitle';
      title.textContent = section.title;
      node.appendChild(title);

      const empty = document.createElement('p');
      empty.className = 'jp-AnimusSidebar-empty';
      empty.textContent = section.empty;
      node.appendChild(empty);

      this.node.appendChild(node);
    }
  }

  /**
   * Show the given project, or the "no project" text.
   */
  setProject(name: string | null): void {
    this._projectNode.textContent = name ? `Project: ${name}` : NO_PROJECT;
    this._projectNode.classList.toggle('jp-mod-noProject', !name);
  }

  /**
   * Ask the server extension for the current context and show its project.
   */
  async refresh(): Promise<void> {
    try {
      const context = await requestAPI<IAnimusContext>('context');
      this.setProject(projectName(context));
    } catch (reason) {
      // A missing or failing server extension is not an error for the user:
      // the panel still works, it just has no project to show.
      console.debug(`Animus context is not available: ${reason}`);
      this.setProject(PageConfig.getOption('animusProject') || null);
    }
  }

  private _projectNode: HTMLDivElement;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'The Animus Datalab sidebar panel.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ) => {
    const sidebar = new AnimusSidebar();
    app.shell.add(sidebar, 'left', { rank: 900 });
    restorer?.add(sidebar, SIDEBAR_ID);
    void sidebar.refresh();

    app.commands.addCommand(OPEN_COMMAND, {
      label: 'Show Animus Panel',
      caption: 'Open the Animus sidebar',
      icon: animusIcon,
      execute: () => {
        app.shell.activateById(SIDEBAR_ID);
        return sidebar.refresh();
      }
    });
    palette?.addItem({ command: OPEN_COMMAND, category: 'Animus' });
  }
};

export default plugin;
