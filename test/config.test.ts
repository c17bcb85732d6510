import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadReportConfig, resolvePreprocessing } from '../pipelines/config';
import { ConvlensError } from '../pipelines/errors';

const configModule = path.resolve('pipelines/config.ts').replaceAll('\\', '/');

/** Writes reports/<id>/report.config.ts in a temp project and returns its path. */
function writeConfig(body: string, id = 'demo'): string {
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-config-')), 'reports', id);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'report.config.ts');
  fs.writeFileSync(file, `import { defineReport } from '${configModule}';\nexport default defineReport(${body});\n`);
  return file;
}

async function errorOf(p: Promise<unknown>): Promise<ConvlensError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ConvlensError);
    return e as ConvlensError;
  }
  throw new Error('expected an error');
}

describe('report config', () => {
  it('parses a valid config and applies defaults', async () => {
    const file = writeConfig(`{ title: 'T', model: './model', dataset: { type: 'fashion-mnist' } }`);
    const report = await loadReportConfig(file);
    expect(report.id).toBe('demo');
    expect(report.modelDir).toBe(path.join(path.dirname(file), 'model'));
    expect(report.config.seed).toBe(0);
    expect(report.config.techniques).toEqual({});
    expect(report.config.preprocessing.fit).toBe('fill');
  });

  it('names the file and the field of every mistake', async () => {
    const file = writeConfig(`{ title: '', model: './model', dataset: { type: 'fashion-mnist' }, samplesPerClass: 'many' } as any`);
    const e = await errorOf(loadReportConfig(file));
    expect(e.message).toContain('report.config.ts');
    expect(e.message).toMatch(/title: /);
    expect(e.message).toMatch(/samplesPerClass: /);
    expect(e.message.split('\n')).toHaveLength(1);
  });

  it('rejects unknown fields (typos) by name', async () => {
    const e = await errorOf(loadReportConfig(writeConfig(`{ title: 'T', model: './m', dataset: { type: 'fashion-mnist' }, preprocesing: {} } as any`)));
    expect(e.message).toContain('preprocesing');
  });

  it('refuses a model path that leaves the report folder', async () => {
    const e = await errorOf(loadReportConfig(writeConfig(`{ title: 'T', model: '../../etc', dataset: { type: 'fashion-mnist' } }`)));
    expect(e.message).toContain('model');
    expect(e.message).toContain('leaves the report folder');
    const abs = await errorOf(loadReportConfig(writeConfig(`{ title: 'T', model: '/etc', dataset: { type: 'fashion-mnist' } }`)));
    expect(abs.message).toContain('leaves the report folder');
  });

  it('refuses a dataset folder that leaves the report folder', async () => {
    const e = await errorOf(loadReportConfig(writeConfig(`{ title: 'T', model: './m', dataset: { type: 'image-folder', path: '../../../data' } }`)));
    expect(e.message).toMatch(/dataset\.path: path '\.\.\/\.\.\/\.\.\/data' leaves the report folder/);
  });

  it('reports a missing file and a config that does not load', async () => {
    expect((await errorOf(loadReportConfig('/nonexistent/report.config.ts'))).message).toContain('not found');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-config-'));
    fs.writeFileSync(path.join(dir, 'report.config.ts'), 'export default {{{');
    expect((await errorOf(loadReportConfig(path.join(dir, 'report.config.ts')))).message).toContain('could not load the config');
  });
});

describe('preprocessing defaults', () => {
  it('come from the model input shape', () => {
    expect(resolvePreprocessing({ fit: 'fill' }, [28, 28, 1], 'f')).toEqual({ size: [28, 28], channels: 1, fit: 'fill', normalize: { kind: 'range', min: 0, max: 1 } });
    const p = resolvePreprocessing({ fit: 'cover', mean: [0.5, 0.4, 0.3], std: [0.2, 0.2, 0.2] }, [224, 224, 3], 'f');
    expect(p.normalize).toEqual({ kind: 'meanStd', mean: [0.5, 0.4, 0.3], std: [0.2, 0.2, 0.2] });
  });
  it('need an explicit size for a model that accepts any size, and matching mean/std lengths', () => {
    expect(() => resolvePreprocessing({ fit: 'fill' }, [null, null, 3], 'cfg.ts')).toThrow(/preprocessing.size/);
    expect(() => resolvePreprocessing({ fit: 'fill', mean: [0.5, 0.5], std: [1, 1] }, [32, 32, 3], 'cfg.ts')).toThrow(/preprocessing.mean/);
  });
});
