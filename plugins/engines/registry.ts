/** The one registry of engine plugins; a duplicate name is a programming error. */
import type { EnginePlugin } from './types.js';
import { directoryPlugin } from './directory/plugin.js';
import { redisPlugin } from './redis/plugin.js';
import { etcdPlugin } from './etcd/plugin.js';

const plugins = new Map<string, EnginePlugin>();

export function registerPlugin(plugin: EnginePlugin): void {
  if (plugins.has(plugin.name)) throw new Error(`engine plugin "${plugin.name}" is registered twice`);
  plugins.set(plugin.name, plugin);
}

registerPlugin(directoryPlugin as unknown as EnginePlugin);
registerPlugin(redisPlugin as unknown as EnginePlugin);
registerPlugin(etcdPlugin as unknown as EnginePlugin);

export function getPlugin(name: string): EnginePlugin | undefined {
  return plugins.get(name);
}

export function pluginNames(): string[] {
  return [...plugins.keys()];
}
