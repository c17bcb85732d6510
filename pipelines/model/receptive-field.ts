/**
 * Receptive fields of every spatial node of the executor's DAG: pure arithmetic, checked in
 * test/model-receptive-field.test.ts against the support of input gradients.
 *
 * Coordinates: input pixel (i, j) has its centre at (i, j), so the field of unit (u, v) of a
 * node covers rows start[0] + u·jump[0] ± (size[0] − 1)/2 (see `fieldBounds`), which are always
 * whole numbers; rows outside 0..height−1 are padding.
 */
import type { ReceptiveField } from '../types';
import type { GraphNode } from './graph';

type Axis = { size: number; jump: number; start: number };

/** TF's SAME rule: out = ceil(in / stride); the padding before is floor(total / 2). */
export function samePadBefore(inSize: number, stride: number, effectiveKernel: number): number {
  const out = Math.ceil(inSize / stride);
  const total = Math.max((out - 1) * stride + effectiveKernel - inSize, 0);
  return Math.floor(total / 2);
}

/**
 * Field of every node (by name); undefined for nodes whose output is no longer an image grid
 * (Dense, Flatten, global pooling, Reshape) and for everything downstream of them.
 */
export function receptiveFields(nodes: GraphNode[]): Map<string, ReceptiveField | undefined> {
  const fields = new Map<string, ReceptiveField | undefined>();
  for (const node of nodes) fields.set(node.name, fieldOf(node, fields, nodes));
  return fields;
}

function fieldOf(node: GraphNode, fields: Map<string, ReceptiveField | undefined>, nodes: GraphNode[]): ReceptiveField | undefined {
  if (node.role === 'input') return { size: [1, 1], jump: [1, 1], start: [0, 0] };
  const ins = node.inbound.map((n) => fields.get(n));
  if (ins.length === 0 || ins.some((f) => f === undefined)) return undefined;
  const first = ins[0]!;
  const op = node.spatial;
  switch (op.kind) {
    case 'none':
      return undefined;
    case 'pointwise':
      return first;
    case 'pad':
      return fromAxes(
        [0, 1].map((a) => ({ size: first.size[a], jump: first.jump[a], start: first.start[a] - op.pads[a][0] * first.jump[a] })),
      );
    case 'window': {
      const inShape = nodes.find((n) => n.name === node.inbound[0])!.outputShape;
      return fromAxes(
        [0, 1].map((a) => {
          const effectiveKernel = op.dilation[a] * (op.kernel[a] - 1) + 1;
          const padBefore = op.padding === 'same' ? samePadBefore(inShape[a], op.strides[a], effectiveKernel) : 0;
          return {
            size: first.size[a] + (effectiveKernel - 1) * first.jump[a],
            jump: first.jump[a] * op.strides[a],
            start: first.start[a] + ((effectiveKernel - 1) / 2 - padBefore) * first.jump[a],
          };
        }),
      );
    }
    case 'merge':
      return union(ins as ReceptiveField[]);
  }
}

/**
 * Where branches disagree, a merged unit sees everything each branch sees: we take the union,
 * i.e. the smallest field covering all branches' fields of unit (0, 0). Branches on one grid
 * share a jump; if they do not, the largest jump is kept (the union is then exact for unit
 * (0, 0) only).
 */
function union(fields: ReceptiveField[]): ReceptiveField {
  return fromAxes(
    [0, 1].map((a) => {
      const lo = Math.min(...fields.map((f) => f.start[a] - (f.size[a] - 1) / 2));
      const hi = Math.max(...fields.map((f) => f.start[a] + (f.size[a] - 1) / 2));
      return { size: hi - lo + 1, jump: Math.max(...fields.map((f) => f.jump[a])), start: (lo + hi) / 2 };
    }),
  );
}

function fromAxes(axes: Axis[]): ReceptiveField {
  return {
    size: [axes[0].size, axes[1].size],
    jump: [axes[0].jump, axes[1].jump],
    start: [axes[0].start, axes[1].start],
  };
}

/** Inclusive input-pixel bounds of unit (u, v)'s field, clipped to the image when `imageSize` is given. */
export function fieldBounds(
  field: ReceptiveField,
  unit: [number, number],
  imageSize?: [number, number],
): { top: number; bottom: number; left: number; right: number } {
  const lo = (a: number) => field.start[a] + unit[a] * field.jump[a] - (field.size[a] - 1) / 2;
  const hi = (a: number) => field.start[a] + unit[a] * field.jump[a] + (field.size[a] - 1) / 2;
  const clip = (v: number, a: number) => (imageSize ? Math.min(Math.max(v, 0), imageSize[a] - 1) : v);
  return { top: clip(lo(0), 0), bottom: clip(hi(0), 0), left: clip(lo(1), 1), right: clip(hi(1), 1) };
}
