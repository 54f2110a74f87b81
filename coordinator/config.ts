/** The cluster config (lockstep.yaml): schema → normalise → cross-field rules. */
import { Type, type Static } from '@sinclair/typebox';
import { loadConfig, parseAddress, resolvePath, type ConfigProblem } from '../lib/config.js';
import { StringEnum } from '../lib/schema.js';
import type { TlsFiles } from '../lib/tls/files.js';
import { checkRepositorySettings, type RepositorySettings } from '../plugins/storage/registry.js';

const Name = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$' });

export const ClusterConfigSchema = Type.Object(
  {
    cluster: Name,
    repository: Type.Object({ driver: Type.String({ minLength: 1 }) }, { additionalProperties: true }),
    tls: Type.Object(
      { ca: Type.String({ minLength: 1 }), cert: Type.String({ minLength: 1 }), key: Type.String({ minLength: 1 }) },
      { additionalProperties: false },
    ),
    agents: Type.Array(
      Type.Object({ node: Name, address: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
      { minItems: 1 },
    ),
    coverage: StringEnum(['default', 'all'], { default: 'default' }),
    freeze: Type.Object(
      {
        /** a freeze ends by itself this long after its last renewal */
        ttlMs: Type.Integer({ minimum: 500, maximum: 600_000, default: 10_000 }),
      },
      { additionalProperties: false, default: {} },
    ),
    timeouts: Type.Object(
      {
        connectMs: Type.Integer({ minimum: 100, default: 5000 }),
        requestMs: Type.Integer({ minimum: 100, default: 60_000 }),
        /** one job (a snapshot, an upload …) */
        jobMs: Type.Integer({ minimum: 1000, default: 6 * 3600_000 }),
        pollMs: Type.Integer({ minimum: 10, default: 250 }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false },
);

export interface AgentRef {
  node: string;
  address: string;
  host: string;
  port: number;
}

export interface ClusterConfig {
  file: string;
  cluster: string;
  repository: RepositorySettings;
  repositoryBaseDir: string;
  tls: TlsFiles;
  agents: AgentRef[];
  coverage: 'default' | 'all';
  freeze: { ttlMs: number };
  timeouts: Static<typeof ClusterConfigSchema>['timeouts'];
}

function normalise(file: string) {
  return (raw: Static<typeof ClusterConfigSchema>, baseDir: string): ClusterConfig => ({
    file,
    cluster: raw.cluster,
    repository: raw.repository as RepositorySettings,
    repositoryBaseDir: baseDir,
    tls: { ca: resolvePath(baseDir, raw.tls.ca), cert: resolvePath(baseDir, raw.tls.cert), key: resolvePath(baseDir, raw.tls.key) },
    agents: raw.agents.map((a) => {
      const addr = parseAddress(a.address);
      return { node: a.node, address: a.address, host: addr?.host ?? '', port: addr?.port ?? 0 };
    }),
    coverage: raw.coverage,
    freeze: raw.freeze,
    timeouts: raw.timeouts,
  });
}

function rules(cfg: ClusterConfig): ConfigProblem[] {
  const problems = checkRepositorySettings(cfg.repository, 'repository');
  const nodes = new Map<string, number>();
  const addresses = new Map<string, number>();
  cfg.agents.forEach((a, i) => {
    if (a.port === 0) problems.push({ path: `agents[${i}].address`, message: `"${a.address}" is not host:port` });
    const n = nodes.get(a.node);
    if (n !== undefined) problems.push({ path: `agents[${i}].node`, message: `"${a.node}" is already agents[${n}].node` });
    nodes.set(a.node, i);
    const d = addresses.get(a.address);
    if (d !== undefined) problems.push({ path: `agents[${i}].address`, message: `"${a.address}" is already agents[${d}].address` });
    addresses.set(a.address, i);
  });
  return problems;
}

export async function loadClusterConfig(file: string): Promise<ClusterConfig> {
  return loadConfig(file, ClusterConfigSchema, normalise(file), rules);
}
