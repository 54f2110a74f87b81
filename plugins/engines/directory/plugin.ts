/** The `directory` plugin: a data directory with optional stop/start/health commands. */
import { metaThenStorage, type EnginePlugin } from '../types.js';
import { DirectorySettingsSchema } from './settings.js';
import { directoryNode } from './node.js';

export const directoryPlugin = {
  name: 'directory',
  configSchema: DirectorySettingsSchema,
  capabilities: ['stop-start', 'snapshot', 'restore', 'single-node-restore', 'remap'],
  node: directoryNode,
  cluster: { startOrder: metaThenStorage },
} satisfies EnginePlugin<typeof DirectorySettingsSchema>;
