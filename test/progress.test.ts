import { describe, expect, it } from 'vitest';
import { formatSeconds } from '../pipelines/progress';

describe('formatSeconds', () => {
  it('prints tenths under a minute and whole seconds after, never "60 s"', () => {
    expect(formatSeconds(0.04)).toBe('0.0 s');
    expect(formatSeconds(37.66)).toBe('37.7 s');
    expect(formatSeconds(59.94)).toBe('59.9 s');
    expect(formatSeconds(59.96)).toBe('1 min 0 s');
    expect(formatSeconds(119.6)).toBe('2 min 0 s');
    expect(formatSeconds(299.6)).toBe('5 min 0 s');
    expect(formatSeconds(396.4)).toBe('6 min 36 s');
  });
});
