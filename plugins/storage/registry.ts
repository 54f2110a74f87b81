/** The one registry of storage drivers; a duplicate name is a programming error. */
import { LockstepError } from '../../lib/errors.js';
import { checkSchema, type ConfigProblem } from '../../lib/config.js';
import { checkRepoOwnSettings, driverSettings, openRepository } from '../../lib/repo/open.js';
import type { Repository } from '../../lib/repo/repository.js';
import { fsDriver } from './fs.js';
import { s3Driver } from './s3.js';
import type { StorageDriver, StorageDriverFactory } from './types.js';

const drivers = new Map<string, StorageDriverFactory>();

export function registerDriver(factory: StorageDriverFactory): void {
  if (drivers.has(factory.name)) throw new Error(`storage driver "${factory.name}" is registered twice`);
  drivers.set(factory.name, factory);
}

registerDriver(fsDriver);
registerDriver(s3Driver);

export function driverNames(): string[] {
  return [...drivers.keys()];
}

export interface RepositorySettings {
  driver: string;
  [setting: string]: unknown;
}

/** Problems with a `repository:` block, with paths under `prefix`. */
export function checkRepositorySettings(settings: RepositorySettings, prefix: string): ConfigProblem[] {
  const factory = drivers.get(settings.driver);
  if (!factory) {
    return [{ path: `${prefix}.driver`, message: `unknown storage driver "${settings.driver}" (known: ${driverNames().join(', ')})` }];
  }
  const { driver: _driver, ...rest } = driverSettings(settings);
  const problems = checkSchema(factory.configSchema, rest, prefix);
  // what the schema cannot tell, once the settings have the shapes it wants
  if (problems.length === 0 && factory.checkSettings) problems.push(...factory.checkSettings(rest, prefix));
  return [...problems, ...checkRepoOwnSettings(settings, prefix)];
}

export function openDriver(settings: RepositorySettings, baseDir: string): StorageDriver {
  const factory = drivers.get(settings.driver);
  if (!factory) throw new LockstepError('LOCKSTEP_E_CONFIG_INVALID', `unknown storage driver "${settings.driver}"`);
  const { driver: _driver, ...rest } = driverSettings(settings);
  return factory.open(rest, baseDir);
}

/** The repository the settings name, opened with its key when it is encrypted. */
export async function openRepositoryAt(settings: RepositorySettings, baseDir: string, node?: string): Promise<Repository> {
  return openRepository(openDriver(settings, baseDir), settings, baseDir, node);
}
