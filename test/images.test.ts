import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { applyColormap, colorbarPng, colormapTable, encodePng, imageGrid, toUint8Image } from '../pipelines/images';

const luminance = (r: number, g: number, b: number) => 0.2126 * r + 0.7152 * g + 0.0722 * b;

describe('encodePng', () => {
  it('round-trips RGB, RGBA and grey pixels through sharp exactly', async () => {
    for (const channels of [1, 3, 4] as const) {
      const w = 3;
      const h = 2;
      const pixels = Uint8Array.from({ length: w * h * channels }, (_, i) => (i * 37 + 11) % 256);
      const png = await encodePng(pixels, w, h, channels);
      const meta = await sharp(png).metadata();
      expect(meta.format).toBe('png');
      expect([meta.width, meta.height, meta.channels]).toEqual([w, h, channels]);
      const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
      // sharp decodes a grey PNG as RGB: compare the first channel only.
      if (channels === 1) expect(Array.from({ length: w * h }, (_, i) => data[i * info.channels])).toEqual([...pixels]);
      else expect([...data]).toEqual([...pixels]);
    }
  });

  it('accepts a Uint8ClampedArray view with an offset and rejects a wrong length', async () => {
    const backing = new Uint8ClampedArray(10).fill(9);
    const view = new Uint8ClampedArray(backing.buffer, 4, 4);
    const png = await encodePng(view, 2, 2, 1);
    expect((await sharp(png).metadata()).width).toBe(2);
    await expect(encodePng(new Uint8Array(5), 2, 2, 1)).rejects.toThrow(/5 values for 2×2×1/);
  });
});

describe('toUint8Image', () => {
  it('maps min → 0 and max → 255 linearly, clamping and rounding', () => {
    const v = Float32Array.from([-1, 0, 1, 2, -5, 5, NaN, 0.5]);
    expect([...toUint8Image(v, 2, 2, 2, { min: -1, max: 1 })]).toEqual([0, 128, 255, 255, 0, 255, 0, 191]);
    expect([...toUint8Image(Float32Array.from([3, 3]), 1, 1, 2, { min: 3, max: 3 })]).toEqual([0, 0]);
  });
});

describe('imageGrid', () => {
  it('places tiles with gap and background, replicating grey into RGB', () => {
    const a = { pixels: Uint8Array.from([10, 20, 30, 40, 50, 60]), width: 2, height: 1, channels: 3 as const };
    const b = { pixels: Uint8Array.from([200]), width: 1, height: 1, channels: 1 as const };
    const g = imageGrid([a, b], 2, { gap: 1, background: 7 });
    expect([g.width, g.height, g.channels]).toEqual([5, 1, 3]);
    expect([...g.pixels]).toEqual([10, 20, 30, 40, 50, 60, 7, 7, 7, 200, 200, 200, 7, 7, 7]);
  });

  it('upscales by nearest neighbour and wraps rows', () => {
    const t = (v: number) => ({ pixels: Uint8Array.from([v, v + 1]), width: 2, height: 1, channels: 1 as const });
    const g = imageGrid([t(1), t(3), t(5)], 2, { gap: 0, upscale: 2 });
    expect([g.width, g.height, g.channels]).toEqual([8, 4, 1]);
    const row = (y: number) => [...g.pixels.slice(y * 8, y * 8 + 8)];
    expect(row(0)).toEqual([1, 1, 2, 2, 3, 3, 4, 4]);
    expect(row(1)).toEqual([1, 1, 2, 2, 3, 3, 4, 4]);
    expect(row(2)).toEqual([5, 5, 6, 6, 255, 255, 255, 255]);
  });

  it('keeps alpha when a tile is RGBA', () => {
    const rgba = { pixels: Uint8Array.from([1, 2, 3, 4]), width: 1, height: 1, channels: 4 as const };
    const grey = { pixels: Uint8Array.from([9]), width: 1, height: 1, channels: 1 as const };
    const g = imageGrid([rgba, grey], 2, { gap: 0 });
    expect([...g.pixels]).toEqual([1, 2, 3, 4, 9, 9, 9, 255]);
  });
});

describe('colour maps', () => {
  it('hits the published endpoints exactly', () => {
    const ends = (name: Parameters<typeof applyColormap>[1]) => [...applyColormap(Float32Array.from([0, 1]), name, { min: 0, max: 1 })];
    expect(ends('viridis')).toEqual([0x44, 0x01, 0x54, 0xfd, 0xe7, 0x25]);
    expect(ends('inferno')).toEqual([0x00, 0x00, 0x04, 0xfc, 0xff, 0xa4]);
    expect(ends('gray')).toEqual([0, 0, 0, 255, 255, 255]);
  });

  it('viridis and inferno have strictly increasing luminance', () => {
    for (const name of ['viridis', 'inferno'] as const) {
      const lut = colormapTable(name);
      for (let i = 1; i < lut.length / 3; i++) {
        const prev = luminance(lut[i * 3 - 3], lut[i * 3 - 2], lut[i * 3 - 1]);
        // Linear in float between control points; rounding to uint8 may cost ±0.5 per channel.
        expect(luminance(lut[i * 3], lut[i * 3 + 1], lut[i * 3 + 2])).toBeGreaterThan(prev - 0.5);
        if (i >= 8) expect(luminance(lut[i * 3], lut[i * 3 + 1], lut[i * 3 + 2])).toBeGreaterThan(luminance(lut[i * 3 - 24], lut[i * 3 - 23], lut[i * 3 - 22]));
      }
      expect(luminance(lut[lut.length - 3], lut[lut.length - 2], lut[lut.length - 1]) - luminance(lut[0], lut[1], lut[2])).toBeGreaterThan(150);
    }
  });

  it('rdbu is symmetric around zero: 0 → near-white, negative → blue, positive → red', () => {
    const c = applyColormap(Float32Array.from([0, -1, 3, -3, NaN]), 'rdbu', { min: -1, max: 3 });
    expect([...c.slice(0, 3)]).toEqual([0xf7, 0xf7, 0xf7]);
    expect(c[5]).toBeGreaterThan(c[3]); // -1: blue dominant
    expect([...c.slice(6, 9)]).toEqual([0x67, 0x00, 0x1f]); // +3 = +m: darkest red
    expect([...c.slice(9, 12)]).toEqual([0x05, 0x30, 0x61]); // -3 = -m: darkest blue (range made symmetric)
    expect([...c.slice(12, 15)]).toEqual([0x05, 0x30, 0x61]); // NaN like min
  });

  it('clamps values outside the range', () => {
    const c = applyColormap(Float32Array.from([-10, 10]), 'gray', { min: 0, max: 1 });
    expect([...c]).toEqual([0, 0, 0, 255, 255, 255]);
  });

  it('colorbarPng draws the gradient left to right with a text row', async () => {
    const png = await colorbarPng('viridis', { min: 0, max: 2 }, { width: 120, height: 30, label: 'saliency <|x|>' });
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([120, 30]);
    const at = (x: number, y: number) => [...data.slice((y * 120 + x) * info.channels, (y * 120 + x) * info.channels + 3)];
    expect(at(0, 0)).toEqual([0x44, 0x01, 0x54]);
    expect(at(119, 5)).toEqual([0xfd, 0xe7, 0x25]);
    // Some text pixels are drawn (dark) below the bar.
    let dark = 0;
    for (let y = 16; y < 30; y++) for (let x = 0; x < 120; x++) if (at(x, y)[0] < 128) dark++;
    expect(dark).toBeGreaterThan(10);
  });
});
