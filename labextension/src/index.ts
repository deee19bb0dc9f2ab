import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { LabIcon, SidePanel } from '@jupyterlab/ui-components';

import { loadContext } from './api';
import { AnimusState, Section } from './section';
import { AuditSection } from './panels/audit';
import { DatasetsSection } from './panels/datasets';
import { ExperimentsSection } from './panels/experiments';
import { ModelsSection } from './panels/models';
import { ProjectSection } from './panels/project';
import { RunsSection } from './panels/runs';

export { loadingSnippet } from './panels/datasets';

const PLUGIN_ID = '@animus-datalab/labextension:sidebar';
const SIDEBAR_ID = 'animus-sidebar';
const OPEN_COMMAND = 'animus:open-sidebar';
const REFRESH_COMMAND = 'animus:refresh';

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
 * The "Animus" left sidebar: Project, Datasets, Experiments, Runs, Models and
 * Audit panels, all fed by the server extension (`<base>/animus/...`).
 */
export class AnimusSidebar extends SidePanel {
  constructor(app: JupyterFrontEnd) {
    super();
    this.id = SIDEBAR_ID;
    this.addClass('jp-AnimusSidebar');
    this.title.icon = animusIcon;
    this.title.caption = 'Animus';
    const heading = document.createElement('h2');
    heading.className = 'jp-AnimusSidebar-heading';
    heading.textContent = 'Animus';
    this.header.node.appendChild(heading);
    this.sections = [
      new ProjectSection(this.state, app.commands),
      new DatasetsSection(this.state),
      new ExperimentsSection(this.state),
      new RunsSection(this.state),
      new ModelsSection(this.state),
      new AuditSection(this.state)
    ];
    for (const section of this.sections) {
      this.addWidget(section);
    }
  }

  /** Load the context again (who, which project, which role); every panel then re-renders. */
  async refresh(): Promise<void> {
    try {
      this.state.set(await loadContext(), null);
    } catch (reason) {
      this.state.set(null, reason instanceof Error ? reason.message : String(reason));
    }
  }

  readonly state = new AnimusState();
  readonly sections: Section[];
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'The Animus Datalab sidebar: project, datasets, experiments, runs, models and audit.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null, palette: ICommandPalette | null) => {
    const sidebar = new AnimusSidebar(app);
    app.shell.add(sidebar, 'left', { rank: 900 });
    restorer?.add(sidebar, SIDEBAR_ID);
    void sidebar.refresh();

    app.commands.addCommand(OPEN_COMMAND, {
      label: 'Show Animus Panel',
      caption: 'Open the Animus sidebar',
      icon: animusIcon,
      execute: () => {
        app.shell.activateById(SIDEBAR_ID);
      }
    });
    app.commands.addCommand(REFRESH_COMMAND, {
      label: 'Reload Animus Panels',
      caption: 'Load the project, datasets, runs and models again',
      execute: () => sidebar.refresh()
    });
    palette?.addItem({ command: OPEN_COMMAND, category: 'Animus' });
    palette?.addItem({ command: REFRESH_COMMAND, category: 'Animus' });
  }
};

export default plugin;
