/**
 * Rows for a parameters table from the JSON Schema the runner generates from a technique's zod
 * params (`z.toJSONSchema(schema, { io: 'input' })`). Pure, so the table cannot drift from the schema.
 */
export interface ParamRow {
  name: string;
  type: string;
  /** JSON text of the default, or undefined when there is none. */
  default?: string;
  description?: string;
  required: boolean;
}

type Schema = Record<string, unknown>;
const isObj = (v: unknown): v is Schema => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A short human type: "integer ≥ 1", "'a' | 'b'", "number[]", "string | null". */
export function typeOf(s: unknown): string {
  if (!isObj(s)) return 'any';
  if ('const' in s) return JSON.stringify(s.const);
  if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  const alts = (s.anyOf ?? s.oneOf) as unknown;
  if (Array.isArray(alts)) return alts.map(typeOf).join(' | ');
  const t = Array.isArray(s.type) ? (s.type as string[]).join(' | ') : typeof s.type === 'string' ? s.type : undefined;
  if (t === 'array') {
    const items = Array.isArray(s.prefixItems) ? `[${(s.prefixItems as unknown[]).map(typeOf).join(', ')}]` : `${typeOf(s.items)}[]`;
    return items;
  }
  if (t === 'integer' || t === 'number') {
    const bounds: string[] = [];
    if (typeof s.minimum === 'number') bounds.push(`≥ ${s.minimum}`);
    if (typeof s.exclusiveMinimum === 'number') bounds.push(`> ${s.exclusiveMinimum}`);
    if (typeof s.maximum === 'number') bounds.push(`≤ ${s.maximum}`);
    if (typeof s.exclusiveMaximum === 'number') bounds.push(`< ${s.exclusiveMaximum}`);
    return [t, ...bounds].join(' ');
  }
  if (t === 'object' && isObj(s.properties)) return 'object';
  return t ?? 'any';
}

export function paramRows(schema: unknown): ParamRow[] {
  if (!isObj(schema) || !isObj(schema.properties)) return [];
  const required = new Set(Array.isArray(schema.required) ? (schema.required as string[]) : []);
  return Object.entries(schema.properties).map(([name, p]) => {
    const prop = isObj(p) ? p : {};
    const description = typeof prop.description === 'string' ? prop.description : undefined;
    // With io: 'input', a defaulted field is optional; only a field without one is required.
    return { name, type: typeOf(prop), default: 'default' in prop ? JSON.stringify(prop.default) : undefined, description, required: required.has(name) && !('default' in prop) };
  });
}
