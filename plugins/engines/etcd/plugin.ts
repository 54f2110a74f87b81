/** The `etcd` plugin: Raft-consistent snapshots; restore rebuilds the membership under a new token. */
import { metaThenStorage, type EnginePlugin } from '../types.js';
import { checkEtcdSettings, EtcdSettingsSchema } from './settings.js';
import { etcdNode } from './node.js';

export const etcdPlugin = {
  name: 'etcd',
  configSchema: EtcdSettingsSchema,
  checkSettings: checkEtcdSettings,
  // remap: membership comes from the live members, so other names and addresses work
  capabilities: ['snapshot', 'restore', 'remap'],
  // the staged snapshot.db is not in the live data dir: keep the last one as a local source
  keepLastSnapshot: () => true,
  node: etcdNode,
  cluster: {
    startOrder: metaThenStorage,
    // SIGTERM makes a leader hand leadership to its best-connected peer first; when every
    // member stops at once that peer is stopping too and the hand-over waits out its
    // deadline (~8 s). With the followers down first, the leader has no peer and stops at once.
    stopOrder(components) {
      const leader = components.filter((c) => c.role === 'leader');
      const rest = components.filter((c) => c.role !== 'leader');
      return [rest, leader].filter((g) => g.length > 0);
    },
    restoreParams(members, restoreId) {
      const initialCluster = members.map((m) => `${m.details.member}=${m.details.peerUrl}`).join(',');
      // a new token per restore: members of an old cluster can never join the new one
      const token = `lockstep-${restoreId}`;
      return new Map(members.map((m) => [`${m.node}/${m.component}`, { initialCluster, token }]));
    },
  },
} satisfies EnginePlugin<typeof EtcdSettingsSchema>;
