/** Deleting many objects at once, in batches where the store has them. */
import { forEachLimit } from '../../agent/transfer/pool.js';
import { DELETE_MANY_MAX, type StorageDriver } from '../../plugins/storage/types.js';

/** objects deleted at once, one a request */
const DELETES_AT_ONCE = 16;
/** batch deletes (a store that has them) at once, `DELETE_MANY_MAX` objects each */
const BATCHES_AT_ONCE = 4;

/**
 * Delete `keys`: in batches where the store has them (S3 DeleteObjects: a thousand a
 * request, where one a request took a prune of a busy repository minutes), then one a
 * request, `DELETES_AT_ONCE` at a time, whatever a batch gave back (every key, on a store
 * without batches).
 */
export async function deleteKeys(driver: StorageDriver, keys: readonly string[], signal?: AbortSignal): Promise<void> {
  let left = keys;
  if (driver.deleteMany) {
    const batches: (readonly string[])[] = [];
    for (let i = 0; i < keys.length; i += DELETE_MANY_MAX) batches.push(keys.slice(i, i + DELETE_MANY_MAX));
    const refused: string[] = [];
    await forEachLimit(batches, BATCHES_AT_ONCE, async (batch) => void refused.push(...(await driver.deleteMany!(batch, signal))), signal);
    left = refused;
  }
  await forEachLimit(left, DELETES_AT_ONCE, (key) => driver.delete(key), signal);
}
