/** agent.yaml: schema → normalise → cross-field rules, every problem with its path. */
import { Type, type Static } from '@sinclair/typebox';
import { checkSchema, joinPath, loadConfig, resolvePath, type ConfigProblem } from '../lib/config.js';
import { tiers } from '../lib/wire.js';
import { Argv, StringEnum } from '../lib/schema.js';
import type { TlsFiles } from '../lib/tls/files.js';
import { checkRepositorySettings, type RepositorySettings } from '../plugins/storage/registry.js';
import { getPlugin, pluginNames } from '../plugins/engines/registry.js';
import type { ComponentBase } from '../plugins/engines/types.js';

const Name = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$' });

const ComponentSchema = Type.Object(
  {
    name: Name,
    plugin: Type.String({ minLength: 1 }),
    tier: StringEnum(tiers, { default: 'storage' }),
    shard: Type.Optional(Type.String({ minLength: 1 })),
    role: Type.Optional(Type.String({ minLength: 1 })),
    /** run on this node once every restored component of the cluster is healthy; failing rolls the restore back */
    afterRestore: Type.Optional(Argv),
    afterRestoreTimeoutMs: Type.Integer({ minimum: 100, default: 600_000 }),
    /** run on this node once the restore has staged everything, before any service is stopped; failing stops the restore there */
    beforeRestore: Type.Optional(Argv),
    beforeRestoreTimeoutMs: Type.Integer({ minimum: 100, default: 600_000 }),
  },
  { additionalProperties: true },
);

export const AgentConfigSchema = Type.Object(
  {
    node: Name,
    listen: Type.Object(
      {
        host: Type.String({ minLength: 1, default: '0.0.0.0' }),
        port: Type.Integer({ minimum: 0, maximum: 65535 }),
      },
      { additionalProperties: false },
    ),
    tls: Type.Object(
      { ca: Type.String({ minLength: 1 }), cert: Type.String({ minLength: 1 }), key: Type.String({ minLength: 1 }) },
      { additionalProperties: false },
    ),
    stateDir: Type.String({ minLength: 1 }),
    repository: Type.Object({ driver: Type.String({ minLength: 1 }) }, { additionalProperties: true }),
    components: Type.Array(ComponentSchema, { minItems: 1 }),
    log: Type.Object(
      { level: StringEnum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'info' }) },
      { additionalProperties: false, default: {} },
    ),
    jobHistory: Type.Integer({ minimum: 1, default: 200 }),
    /** memory for the newest index of each component, kept for its next backup (agent/transfer/kept-index.ts; ~4 MiB a GiB of data); 0: none */
    keepIndexMiB: Type.Integer({ minimum: 0, default: 32 }),
    /** local snapshots no job uses are removed once this old (a coordinator died before cleanup) */
    staleSnapshotMs: Type.Integer({ minimum: 60_000, default: 6 * 3600_000 }),
    /**
     * an upload (backup) or stage (a restore's download) no coordinator has asked about for
     * this long is stopped: its coordinator died, or lost this agent, and let the repository's
     * lock go. An upload does not go on writing to the repository unlocked, a stage does not
     * go on filling the disk, and neither keeps its component busy for the next run
     */
    abandonTransferMs: Type.Integer({ minimum: 1000, default: 120_000 }),
  },
  { additionalProperties: false },
);

type RawAgentConfig = Static<typeof AgentConfigSchema>;

export type ComponentConfig = ComponentBase & Record<string, unknown>;

export interface AgentConfig {
  file: string;
  node: string;
  listen: { host: string; port: number };
  tls: TlsFiles;
  stateDir: string;
  repository: RepositorySettings;
  repositoryBaseDir: string;
  components: ComponentConfig[];
  logLevel: string;
  jobHistory: number;
  staleSnapshotMs: number;
  abandonTransferMs: number;
  keepIndexMiB: number;
}

const PATH_SETTINGS = ['path', 'dir', 'configFile', 'dataDir'];
/** the file settings of a component's `tls` (lib/client-tls.ts), resolved as PATH_SETTINGS are */
const TLS_FILES = new Set(['ca', 'cert', 'key']);

function normalise(file: string) {
  return (raw: RawAgentConfig, baseDir: string): AgentConfig => ({
    file,
    node: raw.node,
    listen: raw.listen,
    tls: {
      ca: resolvePath(baseDir, raw.tls.ca),
      cert: resolvePath(baseDir, raw.tls.cert),
      key: resolvePath(baseDir, raw.tls.key),
    },
    stateDir: resolvePath(baseDir, raw.stateDir),
    repository: raw.repository as RepositorySettings,
    repositoryBaseDir: baseDir,
    components: raw.components.map((c) => {
      const out: Record<string, unknown> = { ...c };
      for (const k of PATH_SETTINGS) if (typeof out[k] === 'string') out[k] = resolvePath(baseDir, out[k] as string);
      // a component's own TLS files (an engine's client certificates)
      // (its files only: `serverName` is a name)
      if (out.tls && typeof out.tls === 'object' && !Array.isArray(out.tls)) out.tls = Object.fromEntries(Object.entries(out.tls).map(([k, v]) => [k, typeof v === 'string' && TLS_FILES.has(k) ? resolvePath(baseDir, v) : v]));
      return out as ComponentConfig;
    }),
    logLevel: raw.log.level,
    jobHistory: raw.jobHistory,
    staleSnapshotMs: raw.staleSnapshotMs,
    abandonTransferMs: raw.abandonTransferMs,
    keepIndexMiB: raw.keepIndexMiB,
  });
}

function rules(cfg: AgentConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [...checkRepositorySettings(cfg.repository, 'repository')];
  const seen = new Map<string, number>();
  cfg.components.forEach((c, i) => {
    const at = `components[${i}]`;
    const prev = seen.get(c.name);
    if (prev !== undefined) problems.push({ path: `${at}.name`, message: `"${c.name}" is already the name of components[${prev}]` });
    seen.set(c.name, i);
    const plugin = getPlugin(c.plugin);
    if (!plugin) {
      problems.push({ path: `${at}.plugin`, message: `unknown plugin "${c.plugin}" (known: ${pluginNames().join(', ')})` });
      return;
    }
    const { name: _n, plugin: _p, tier: _t, shard: _s, role: _r, afterRestore: _a, afterRestoreTimeoutMs: _at, beforeRestore: _b, beforeRestoreTimeoutMs: _bt, ...settings } = c;
    const schemaProblems = checkSchema(plugin.configSchema, settings);
    const settingProblems = schemaProblems.length > 0 ? schemaProblems : (plugin.checkSettings?.(settings) ?? []);
    problems.push(...settingProblems.map((p) => ({ path: joinPath(at, p.path), message: p.message })));
    if (settingProblems.length === 0) Object.assign(c, settings); // schema defaults filled in
  });
  return problems;
}

export async function loadAgentConfig(file: string): Promise<AgentConfig> {
  return loadConfig(file, AgentConfigSchema, normalise(file), rules);
}
