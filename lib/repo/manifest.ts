/**
 * The manifest of one backup, versioned. It is written last, create-if-absent; a
 * backup without a manifest does not exist. Everything a restore needs to find its
 * data is in it or referenced from it by key and hash.
 */
import { Type, type Static } from '@sinclair/typebox';
import { LockstepError } from '../errors.js';
import { checkStored, parseJson } from './stored.js';
import { ComponentDescriptionSchema, type NodeDescription } from '../wire.js';
import type { BackupReport } from '../report.js';

export const MANIFEST_VERSION = 1;

/** What a backup records of each component: its description without the live parts (size, health). */
export const TopologyComponentSchema = Type.Pick(ComponentDescriptionSchema, ['name', 'plugin', 'tier', 'role', 'shard', 'paths', 'configFiles']);
export type TopologyComponent = Static<typeof TopologyComponentSchema>;

/** The recorded topology of one described node. */
export function topologyNode(d: NodeDescription, address: string): TopologyNode {
  return {
    node: d.node,
    address,
    components: d.components.map(({ name, plugin, tier, role, shard, paths, configFiles }) => ({ name, plugin, tier, role, shard, paths, configFiles })),
  };
}

export const TopologyNodeSchema = Type.Object({
  node: Type.String(),
  address: Type.String(),
  components: Type.Array(TopologyComponentSchema),
});
export type TopologyNode = Static<typeof TopologyNodeSchema>;

export const ManifestComponentSchema = Type.Object({
  node: Type.String(),
  component: Type.String(),
  plugin: Type.String(),
  shard: Type.String(),
  indexKey: Type.String(),
  indexSha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  files: Type.Integer(),
  bytes: Type.Integer(),
});
export type ManifestComponent = Static<typeof ManifestComponentSchema>;

export const ManifestSchema = Type.Object({
  version: Type.Literal(MANIFEST_VERSION),
  backupId: Type.String(),
  name: Type.String(),
  cluster: Type.String(),
  repositoryId: Type.String(),
  status: Type.Union([Type.Literal('complete'), Type.Literal('partial')]),
  startedAt: Type.String(),
  committedAt: Type.String(),
  topology: Type.Array(TopologyNodeSchema),
  components: Type.Array(ManifestComponentSchema),
  report: Type.Unknown(),
});
export type Manifest = Static<typeof ManifestSchema> & { report: BackupReport };

export function serializeManifest(m: Manifest): Buffer {
  return Buffer.from(`${JSON.stringify(m, null, 1)}\n`);
}

export function parseManifest(text: string, where: string): Manifest {
  const raw = parseJson(text, where);
  if (typeof raw === 'object' && raw !== null && 'version' in raw && raw.version !== MANIFEST_VERSION) {
    throw new LockstepError(
      'LOCKSTEP_E_REPO_CORRUPT',
      `${where} has manifest version ${String(raw.version)}; this lockstep reads version ${MANIFEST_VERSION}`,
      { hint: 'use the lockstep release that wrote this backup, or a newer one' },
    );
  }
  return checkStored(ManifestSchema, raw, where, 'manifest') as Manifest;
}

/** whether backup `m` committed the component `component` of `node` (a partial backup lacks the components that failed) */
export function holdsComponent(m: Manifest, node: string, component: string): boolean {
  return m.components.some((c) => c.node === node && c.component === component);
}
