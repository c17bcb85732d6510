/** One row per Keras layer for the site's architecture table, with receptive fields. */
import type { LayerSummary, ReceptiveField } from '../types';
import type { GraphExecutor } from './graph';
import { receptiveFields } from './receptive-field';

export function summarizeLayers(executor: GraphExecutor, fields?: Map<string, ReceptiveField | undefined>): LayerSummary[] {
  const rf = fields ?? receptiveFields(executor.nodes);
  const rows: LayerSummary[] = [];
  for (const node of executor.nodes) {
    if (node.role === 'preact') continue;
    // a fused layer's params and inbound layers sit on its preact node
    const source = node.role === 'activation' ? executor.node(`${node.name}/preact`) : node;
    const row: LayerSummary = {
      name: node.name,
      className: node.className,
      outputShape: node.outputShape,
      params: source.params,
      inbound: source.inbound,
    };
    if (node.activation) row.activation = node.activation;
    const field = rf.get(node.name);
    if (field) row.receptiveField = field;
    rows.push(row);
  }
  return rows;
}
