import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { paramRows, typeOf } from '../src/lib/params';
import { headerSize } from '../src/site-data';

describe('paramRows', () => {
  it('documents a zod schema through its JSON Schema: type, default, description, required', () => {
    const schema = z.object({
      samples: z.number().int().min(1).max(64).default(8).describe('How many images.'),
      layer: z.string().optional().describe('Layer name.'),
      rule: z.enum(['plain', 'guided']).default('plain'),
      sigma: z.number().positive(),
      sizes: z.array(z.number()).default([1, 2]),
      target: z.union([z.number(), z.literal('predicted')]).nullable().default(null),
    });
    const rows = paramRows(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }));
    expect(rows.map((r) => r.name)).toEqual(['samples', 'layer', 'rule', 'sigma', 'sizes', 'target']);
    expect(rows[0]).toEqual({ name: 'samples', type: 'integer ≥ 1 ≤ 64', default: '8', description: 'How many images.', required: false });
    expect(rows[1]).toMatchObject({ type: 'string', default: undefined, required: false });
    expect(rows[2]).toMatchObject({ type: '"plain" | "guided"', default: '"plain"' });
    expect(rows[3]).toMatchObject({ type: 'number > 0', required: true });
    expect(rows[4]).toMatchObject({ type: 'number[]', default: '[1,2]' });
    expect(rows[5].type).toContain('"predicted"');
    expect(rows[5].default).toBe('null');
  });

  it('returns no rows for schemas without properties', () => {
    expect(paramRows(undefined)).toEqual([]);
    expect(paramRows({ type: 'object' })).toEqual([]);
    expect(typeOf(undefined)).toBe('any');
  });
});

describe('headerSize', () => {
  it('reads PNG and GIF sizes and rejects unknown bytes', () => {
    const png = Buffer.alloc(24);
    png.writeUInt32BE(0x89504e47, 0);
    png.writeUInt32BE(28, 16);
    png.writeUInt32BE(14, 20);
    expect(headerSize(png)).toEqual({ width: 28, height: 14 });
    const gif = Buffer.from('GIF89a\x05\x00\x03\x00', 'latin1');
    expect(headerSize(gif)).toEqual({ width: 5, height: 3 });
    expect(headerSize(Buffer.from('hello world'))).toBeUndefined();
  });
});
