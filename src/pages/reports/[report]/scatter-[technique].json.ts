/**
 * `/reports/<id>/scatter-<pca|tsne|umap>.json`: the rows of an embedding's interactive scatter
 * (scatterRows), fetched by the browser only; inlined, 10k points would weigh on every page view.
 */
import type { APIRoute, GetStaticPaths } from 'astro';
import { scatterRows } from '../../../charts/specs';
import { EMBEDDINGS, embedding, scatterPoints } from '../../../lib/thumbnails';
import { reports, type ReportManifest } from '../../../site-data';

export const getStaticPaths = (() =>
  reports().flatMap((report) =>
    EMBEDDINGS.filter((t) => embedding(t, report.results[t])).map((technique) => ({ params: { report: report.id, technique }, props: { report, technique } })),
  )) satisfies GetStaticPaths;

export const GET: APIRoute = ({ props }) => {
  const { report, technique } = props as { report: ReportManifest; technique: string };
  return new Response(JSON.stringify(scatterRows(scatterPoints(report, technique))), { headers: { 'Content-Type': 'application/json' } });
};
