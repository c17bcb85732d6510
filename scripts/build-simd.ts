/**
 * Assembles pipelines/kernels/simd.wat into pipelines/kernels/simd-bytes.ts (base64), so that the
 * runtime needs no assembler: `npx tsx scripts/build-simd.ts`. wabt is a devDependency only;
 * test/kernels-simd.test.ts reassembles the source and compares, so the two cannot drift apart.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import wabt from 'wabt';

const here = path.dirname(fileURLToPath(import.meta.url));
export const WAT_PATH = path.join(here, '..', 'pipelines', 'kernels', 'simd.wat');
export const BYTES_PATH = path.join(here, '..', 'pipelines', 'kernels', 'simd-bytes.ts');

/** The wasm binary of `source` (validated; no name section, so the output is deterministic). */
export async function assembleWat(source: string, filename = 'simd.wat'): Promise<Uint8Array> {
  const w = await wabt();
  const mod = w.parseWat(filename, source, { simd: true });
  try {
    mod.validate();
    return mod.toBinary({ write_debug_names: false }).buffer.slice();
  } finally {
    mod.destroy();
  }
}

/** The text of simd-bytes.ts for a binary. */
export function bytesModule(bytes: Uint8Array): string {
  const b64 = Buffer.from(bytes).toString('base64');
  return [
    '// Generated from pipelines/kernels/simd.wat by scripts/build-simd.ts (npx tsx scripts/build-simd.ts).',
    '// Do not edit: change simd.wat and rerun the script.',
    `export const SIMD_WASM_BASE64 =\n  '${b64}';`,
    '',
  ].join('\n');
}

/** simd-bytes.ts as it should be for the current simd.wat. */
export async function expectedBytesModule(): Promise<string> {
  return bytesModule(await assembleWat(await readFile(WAT_PATH, 'utf8')));
}

async function main(): Promise<void> {
  const text = await expectedBytesModule();
  await writeFile(BYTES_PATH, text);
  console.log(`wrote ${path.relative(process.cwd(), BYTES_PATH)} (${text.length} chars)`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await main();
}
