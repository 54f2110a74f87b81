/** The `directory` plugin: a data directory with optional stop/start/health commands. */
import { metaThenStorage, type EnginePlugin } from '../types.js';
import { DirectorySettingsSchema } from './settings.js';
import { directoryNode } from './node.js';

export const directoryPlugin = {
  name: 'directory',
  configSchema: DirectorySettingsSchema,
  capabilities: ['stop-start', 'snapshot', 'restore', 'single-node-restore', 'remap'],
  // the pre-copied snapshot, kept, is where the next pre-copy starts: it copies what changed
  keepLastSnapshot: (c) => c.keepCopy && c.precopy && c.snapshotMode === 'copy' && c.stop !== undefined,
  linksLiveFiles: (c) => c.snapshotMode === 'hardlink' && c.stop !== undefined,
  // (its one set)
  cutSets: (c) => (c.cutByContent ? ['data'] : []),
  node: directoryNode,
  cluster: { startOrder: metaThenStorage },
} satisfies EnginePlugin<typeof DirectorySettingsSchema>;
