/** The `etcd` plugin: Raft-consistent snapshots; restore rebuilds the membership under a new token. */
import { metaThenStorage, type EnginePlugin } from '../types.js';
import { EtcdSettingsSchema } from './settings.js';
import { etcdNode } from './node.js';

export const etcdPlugin = {
  name: 'etcd',
  configSchema: EtcdSettingsSchema,
  // remap: membership comes from the live members, so other names and addresses work
  capabilities: ['snapshot', 'restore', 'remap'],
  // the staged snapshot.db is not in the live data dir: keep the last one as a local source
  keepLastSnapshot: true,
  node: etcdNode,
  cluster: {
    startOrder: metaThenStorage,
    restoreParams(members, restoreId) {
      const initialCluster = members.map((m) => `${m.details.member}=${m.details.peerUrl}`).join(',');
      // a new token per restore: members of an old cluster can never join the new one
      const token = `lockstep-${restoreId}`;
      return new Map(members.map((m) => [`${m.node}/${m.component}`, { initialCluster, token }]));
    },
  },
} satisfies EnginePlugin<typeof EtcdSettingsSchema>;
