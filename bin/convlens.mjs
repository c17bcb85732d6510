#!/usr/bin/env node
// Entry point: registers tsx so the pipeline and the reports' TypeScript configs load as they are.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../pipelines/cli.ts');
const code = await main(process.argv.slice(2));
// Dawn (WebGPU) and wasm workers may hold handles open; the run is complete here.
process.exit(code);
