// Placeholder until the wasm gradient kernels land (being written now); backend.ts calls this once.
export function registerWasmKernels(): void {}
