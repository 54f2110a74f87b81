/**
 * A repository on top of any storage driver: its config object, content-addressed
 * chunks (verified on every read), component indexes and manifests.
 */
import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Readable } from 'node:stream';
import { LockstepError, errnoCode } from '../errors.js';
import type { StorageDriver } from '../../plugins/storage/types.js';
import {
  REPO_CONFIG_KEY,
  REPO_FORMAT,
  backupIdOfManifestKey,
  backupPrefix,
  chunkKey,
  manifestKey,
  probeKey,
} from './layout.js';
import { parseIndex, type ComponentIndex } from './index-file.js';
import { parseManifest, serializeManifest, type Manifest } from './manifest.js';
import { parseJson } from './stored.js';

export interface RepoConfig {
  format: number;
  id: string;
  createdAt: string;
  chunkSize: number;
  hash: 'sha256';
  compression: 'none';
  encryption: 'none';
}

export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;

export function sha256(buf: Buffer | string): string {
  return createHash('sha256').update(buf).digest('hex');
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

export class Repository {
  private constructor(
    readonly driver: StorageDriver,
    readonly config: RepoConfig,
  ) {}

  get location(): string {
    return this.driver.location;
  }

  get id(): string {
    return this.config.id;
  }

  static async init(driver: StorageDriver, chunkSize = DEFAULT_CHUNK_SIZE): Promise<Repository> {
    const config: RepoConfig = {
      format: REPO_FORMAT,
      id: randomUUID(),
      createdAt: new Date().toISOString(),
      chunkSize,
      hash: 'sha256',
      compression: 'none',
      encryption: 'none',
    };
    const created = await driver.putIfAbsent(REPO_CONFIG_KEY, Buffer.from(`${JSON.stringify(config, null, 2)}\n`));
    if (!created) {
      throw new LockstepError('LOCKSTEP_E_REPO_EXISTS', `a repository already exists at ${driver.location}`, {
        hint: 'lockstep never re-initialises a repository; pick an empty location',
      });
    }
    return new Repository(driver, config);
  }

  static async open(driver: StorageDriver, node?: string): Promise<Repository> {
    let text: string;
    try {
      text = (await readAll(await driver.get(REPO_CONFIG_KEY))).toString('utf8');
    } catch (err) {
      if (err instanceof LockstepError && err.code === 'LOCKSTEP_E_OBJECT_NOT_FOUND') {
        throw new LockstepError('LOCKSTEP_E_REPO_NOT_INITIALIZED', `no lockstep repository at ${driver.location}`, {
          node,
          cause: err,
          hint: 'run "lockstep repo init" once; on an agent, check the shared directory is mounted',
        });
      }
      throw err;
    }
    const config = parseJson(text, `${driver.location}/${REPO_CONFIG_KEY}`) as RepoConfig;
    if (config.format !== REPO_FORMAT || typeof config.id !== 'string' || !(config.chunkSize > 0)) {
      throw new LockstepError(
        'LOCKSTEP_E_REPO_CORRUPT',
        `${driver.location}: repository format ${String(config.format)} is not one this lockstep reads (${REPO_FORMAT})`,
        { node },
      );
    }
    return new Repository(driver, config);
  }

  /** Prove this process can write here (and that it sees the repository it expects). */
  async probeWrite(node: string): Promise<void> {
    const key = probeKey(node);
    const body = Buffer.from(JSON.stringify({ node, host: hostname(), at: new Date().toISOString() }));
    await this.driver.put(key, body);
    await this.driver.delete(key);
  }

  async hasChunk(hash: string): Promise<boolean> {
    return (await this.driver.head(chunkKey(hash))) !== undefined;
  }

  /** Store a chunk unless present; true if this call wrote it. */
  async putChunk(hash: string, data: Buffer): Promise<boolean> {
    if (await this.hasChunk(hash)) return false;
    await this.driver.put(chunkKey(hash), data);
    return true;
  }

  /** Read a chunk and check it against its name. */
  async getChunk(hash: string, signal?: AbortSignal): Promise<Buffer> {
    const data = await readAll(await this.driver.get(chunkKey(hash), undefined, signal));
    const actual = sha256(data);
    if (actual !== hash) {
      throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `chunk ${hash} in ${this.location} is corrupt (its content hashes to ${actual})`, {
        hint: 'the repository copy is damaged; restore another backup or repair the storage',
        details: { chunk: hash },
      });
    }
    return data;
  }

  async readObject(key: string): Promise<Buffer> {
    return readAll(await this.driver.get(key));
  }

  /**
   * Write a component index after making every chunk durable, then the index itself;
   * returns its content hash for the manifest.
   */
  async writeIndex(key: string, index: ComponentIndex): Promise<string> {
    const body = Buffer.from(JSON.stringify(index));
    await this.driver.flush();
    await this.driver.put(key, body);
    await this.driver.flush();
    return sha256(body);
  }

  async readIndex(key: string, expectedSha256: string): Promise<ComponentIndex> {
    const body = await this.readObject(key);
    const actual = sha256(body);
    if (actual !== expectedSha256) {
      throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `file index ${key} in ${this.location} does not match the manifest's hash`);
    }
    return parseIndex(body.toString('utf8'), key);
  }

  /** The commit point of a backup: create-if-absent, so two writers cannot both commit. */
  async commitManifest(m: Manifest): Promise<void> {
    const created = await this.driver.putIfAbsent(manifestKey(m.backupId), serializeManifest(m));
    if (!created) {
      throw new LockstepError('LOCKSTEP_E_BACKUP_EXISTS', `backup ${m.backupId} already exists in ${this.location}`);
    }
  }

  async hasManifest(backupId: string): Promise<boolean> {
    return (await this.driver.head(manifestKey(backupId))) !== undefined;
  }

  async readManifest(backupId: string): Promise<Manifest> {
    let body: Buffer;
    try {
      body = await this.readObject(manifestKey(backupId));
    } catch (err) {
      if (err instanceof LockstepError && err.code === 'LOCKSTEP_E_OBJECT_NOT_FOUND') {
        throw new LockstepError('LOCKSTEP_E_BACKUP_NOT_FOUND', `no backup ${backupId} in ${this.location}`, {
          hint: 'list backups with "lockstep backup list"',
        });
      }
      throw err;
    }
    return parseManifest(body.toString('utf8'), manifestKey(backupId));
  }

  /** Ids of committed backups, oldest first. */
  async listBackupIds(): Promise<string[]> {
    const ids: string[] = [];
    for await (const key of this.driver.list('backups/')) {
      const id = backupIdOfManifestKey(key);
      if (id) ids.push(id);
    }
    return ids.sort();
  }

  /** Remove what a backup that never committed left under its prefix (indexes only; chunks may be shared). */
  async discardUncommitted(backupId: string): Promise<void> {
    if (await this.hasManifest(backupId)) return;
    for await (const key of this.driver.list(backupPrefix(backupId))) await this.driver.delete(key);
  }
}

export function isNotFound(err: unknown): boolean {
  return (err instanceof LockstepError && err.code === 'LOCKSTEP_E_OBJECT_NOT_FOUND') || errnoCode(err) === 'ENOENT';
}
