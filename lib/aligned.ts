/**
 * Page-aligned buffers for reading files.
 *
 * A read from the page cache is a kernel copy into the caller's buffer, and that copy is
 * several times slower when the buffer is not aligned: on the 2-core AMD EPYC machines
 * lockstep is measured on, reading 1 GiB of cached file in 1 MiB reads took 600–680 ms
 * into a `Buffer.allocUnsafe` buffer (malloc puts large blocks 16 bytes past a page) and
 * 140 ms into a page-aligned one, the same as `dd`. Writes showed no difference.
 *
 * Node has no aligned allocation, but a WebAssembly memory is mapped whole, page-aligned:
 * a pool's buffers are views at 64 KiB steps of one such memory. Its pages, like malloc's,
 * are resident only once touched, and it is unmapped when the last view is collected.
 * Where a memory cannot be made (an address-space limit: each reserves several GiB of
 * address space, not memory), plain buffers are used and reads are only slower.
 */

const WASM_PAGE = 64 * 1024;

// Node has WebAssembly; this project's type libraries (no DOM) do not declare it
declare const WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number }) => { buffer: ArrayBuffer } };

/** `count` buffers of `size` bytes, each starting on a 64 KiB boundary */
export function alignedBuffers(size: number, count: number): Buffer[] {
  const step = Math.ceil(size / WASM_PAGE) * WASM_PAGE;
  let memory: ArrayBuffer | undefined;
  try {
    const pages = (step * count) / WASM_PAGE;
    memory = new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer;
  } catch {
    memory = undefined;
  }
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) out.push(memory ? Buffer.from(memory, i * step, size) : Buffer.allocUnsafeSlow(size));
  return out;
}

/** one page-aligned buffer of `size` bytes */
export function alignedBuffer(size: number): Buffer {
  return alignedBuffers(size, 1)[0]!;
}
