/** The `redis` plugin: Redis Cluster (or a standalone server) with freeze leases and BGSAVE. */
import { metaThenStorage, type EnginePlugin } from '../types.js';
import { RedisSettingsSchema } from './settings.js';
import { clientTlsProblems } from '../../../lib/client-tls.js';
import { redisNode } from './node.js';

export const redisPlugin = {
  name: 'redis',
  configSchema: RedisSettingsSchema,
  checkSettings: (s) => clientTlsProblems(s.tls),
  capabilities: ['freeze', 'snapshot', 'restore'],
  node: redisNode,
  // every BGSAVE writes the RDB anew: a value of another compressed length, or a key added or removed, moves every byte after it
  cutSets: () => ['data'],
  cluster: { startOrder: metaThenStorage },
} satisfies EnginePlugin<typeof RedisSettingsSchema>;
