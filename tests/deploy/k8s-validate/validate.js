#!/usr/bin/env node
// Validates Kubernetes objects in YAML files (several documents per file)
// offline, three ways, and exits 1 if any object fails any of them:
//   1. schema: each object against the OpenAPI schema of its apiVersion/kind
//      (npm kubernetes-models; @kubernetes-models/prometheus-operator for
//      monitoring.coreos.com): types, required fields, quantities, formats.
//      An apiVersion/kind neither package knows is an error.
//   2. field names: the schemas allow unknown fields, so a misspelt one
//      (`readinesProbe`) would pass 1 and be dropped by the API server. Each
//      object is type-checked with TypeScript against the packages' own
//      interfaces, whose excess-property check rejects unknown fields.
//   3. references within the rendered set, which no schema sees: volume
//      mounts name a volume of the pod, envFrom/configMap volumes name a
//      ConfigMap in the set (kustomize's hash suffix included), selectors
//      match their pod template, a PodMonitor's port is a named port of the
//      pods it selects, and probes and resources are set on every container.
//
// Usage: node validate.js FILE.yaml...
// Env: K8S_VALIDATE_MODULES: the directory whose node_modules hold this
// folder's package.json dependencies (installed with `npm ci`; see
// tests/deploy/check_k8s.sh). Defaults to this script's directory.
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const modulesDir = path.resolve(process.env.K8S_VALIDATE_MODULES || __dirname);
const req = createRequire(path.join(modulesDir, "package.json"));
const YAML = req("yaml");

const errors = [];
const fail = (where, msg) => errors.push(`${where}: ${msg}`);

function moduleFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "monitoring.coreos.com") {
    return `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`;
  }
  return group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`;
}

// --- load every document
const docs = [];
for (const file of process.argv.slice(2)) {
  const parsed = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  parsed.forEach((d, i) => {
    if (d.errors.length) {
      fail(`${file}#${i}`, `YAML: ${d.errors.map((e) => e.message).join("; ")}`);
      return;
    }
    const obj = d.toJS();
    if (obj == null) return;
    const where = `${path.basename(file)}: ${obj.kind || "?"}/${(obj.metadata && obj.metadata.name) || "?"}`;
    docs.push({ obj, where });
  });
}
if (process.argv.length < 3 || docs.length === 0) {
  console.error("validate.js: no objects to validate");
  process.exit(2);
}

// --- 1. schema
for (const d of docs) {
  const { apiVersion, kind } = d.obj;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    fail(d.where, "no apiVersion or kind");
    continue;
  }
  d.module = moduleFor(apiVersion, kind);
  let Model;
  try {
    Model = req(d.module)[kind];
  } catch (e) {
    Model = undefined;
  }
  if (typeof Model !== "function") {
    fail(d.where, `unknown apiVersion/kind ${apiVersion}/${kind} (no ${d.module})`);
    d.module = undefined;
    continue;
  }
  try {
    new Model(d.obj).validate();
  } catch (e) {
    const details = (e.errors || []).map((x) => `${x.instancePath || "/"} ${x.message}`).join("; ");
    fail(d.where, `schema: ${details || e.message}`);
  }
}

// --- 2. field names, with TypeScript's excess-property check
function typeCheck() {
  const ts = req("typescript");
  const known = docs.filter((d) => d.module);
  const lines = [];
  const spans = [];
  known.forEach((d, i) => {
    lines.push(`import type { I${d.obj.kind} as T${i} } from ${JSON.stringify(d.module)};`);
  });
  known.forEach((d, i) => {
    const start = lines.length + 1;
    const body = JSON.stringify(d.obj, null, 2).split("\n");
    lines.push(`export const o${i}: T${i} = ${body[0]}`, ...body.slice(1, -1), `${body[body.length - 1]};`);
    spans.push({ start, end: lines.length, where: d.where, first: start });
  });
  // Inside modulesDir, so that its node_modules resolve the imports.
  const file = path.join(modulesDir, `.validate-${process.pid}.ts`);
  fs.writeFileSync(file, lines.join("\n") + "\n");
  try {
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: [],
      module: ts.ModuleKind.CommonJS,
      moduleResolution: ts.ModuleResolutionKind.Node10,
      target: ts.ScriptTarget.ES2020,
    });
    for (const diag of ts.getPreEmitDiagnostics(program)) {
      const msg = ts.flattenDiagnosticMessageText(diag.messageText, " ");
      if (!diag.file || diag.file.fileName !== file) {
        fail("typescript", msg);
        continue;
      }
      const { line } = diag.file.getLineAndCharacterOfPosition(diag.start);
      const span = spans.find((s) => line + 1 >= s.start && line + 1 <= s.end);
      if (!span) {
        fail("typescript", `line ${line + 1}: ${msg}`);
        continue;
      }
      // Name the field's path: the JSON lines above it, by indentation.
      const src = lines.slice(span.first - 1, line + 1);
      const keys = [];
      let indent = Infinity;
      for (let k = src.length - 1; k >= 0; k--) {
        const m = /^( *)"([^"]+)":/.exec(src[k]);
        if (m && m[1].length < indent) {
          keys.unshift(m[2]);
          indent = m[1].length;
        }
      }
      fail(span.where, `field ${keys.join(".")}: ${msg}`);
    }
  } finally {
    fs.rmSync(file, { force: true });
  }
}
typeCheck();

// --- 3. references and our own rules
const byKind = (k) => docs.filter((d) => d.obj.kind === k);
const configMaps = new Set(byKind("ConfigMap").map((d) => d.obj.metadata.name));
const podTemplates = [];
for (const d of docs) {
  const o = d.obj;
  if (o.kind === "Pod") podTemplates.push({ d, meta: o.metadata || {}, spec: o.spec || {} });
  else if (o.spec && o.spec.template && o.spec.template.spec) {
    podTemplates.push({ d, meta: o.spec.template.metadata || {}, spec: o.spec.template.spec });
    const sel = (o.spec.selector && o.spec.selector.matchLabels) || {};
    const labels = (o.spec.template.metadata && o.spec.template.metadata.labels) || {};
    for (const [k, v] of Object.entries(sel)) {
      if (labels[k] !== v) fail(d.where, `selector ${k}=${v} does not match the pod template's labels`);
    }
  }
}
for (const { d, spec } of podTemplates) {
  const volumes = new Set((spec.volumes || []).map((v) => v.name));
  for (const v of spec.volumes || []) {
    if (v.configMap && !configMaps.has(v.configMap.name)) {
      fail(d.where, `volume ${v.name}: no ConfigMap ${v.configMap.name} in the rendered set`);
    }
  }
  const all = [...(spec.initContainers || []), ...(spec.containers || [])];
  for (const c of all) {
    for (const m of c.volumeMounts || []) {
      if (!volumes.has(m.name)) fail(d.where, `container ${c.name}: mounts ${m.name}, which is no volume of the pod`);
    }
    for (const e of c.envFrom || []) {
      if (e.configMapRef && !configMaps.has(e.configMapRef.name)) {
        fail(d.where, `container ${c.name}: envFrom names no ConfigMap in the rendered set: ${e.configMapRef.name}`);
      }
    }
    if (!c.resources || !c.resources.limits || !c.resources.limits.memory) {
      fail(d.where, `container ${c.name}: no memory limit`);
    }
  }
  for (const c of spec.containers || []) {
    if (c.name !== "shmbrokerd") continue;
    for (const p of ["livenessProbe", "readinessProbe"]) {
      const cmd = (c[p] && c[p].exec && c[p].exec.command) || [];
      if (!(cmd[0] || "").endsWith("shmbroker") || cmd[cmd.length - 1] !== "health") {
        fail(d.where, `container shmbrokerd: ${p} must exec "shmbroker health"`);
      }
    }
  }
}
for (const d of byKind("PodMonitor")) {
  const sel = (d.obj.spec.selector && d.obj.spec.selector.matchLabels) || {};
  const pods = podTemplates.filter(({ meta }) =>
    Object.entries(sel).every(([k, v]) => (meta.labels || {})[k] === v));
  if (pods.length === 0) fail(d.where, "selects no pod in the rendered set");
  for (const ep of d.obj.spec.podMetricsEndpoints || []) {
    const named = pods.some(({ spec }) =>
      (spec.containers || []).some((c) => (c.ports || []).some((p) => p.name === ep.port)));
    if (!named) fail(d.where, `port ${ep.port} is no named container port of the pods it selects`);
  }
}

for (const d of docs) console.log(`  ${d.where} (${d.obj.apiVersion})`);
if (errors.length) {
  for (const e of errors) console.error(`INVALID ${e}`);
  console.error(`validate.js: ${errors.length} error(s) in ${docs.length} objects`);
  process.exit(1);
}
console.log(`validate.js: ${docs.length} objects valid`);
