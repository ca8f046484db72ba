#!/usr/bin/env node
// podman kube play runs Pods and Deployments but not DaemonSets. For a smoke
// test, turn each DaemonSet in a rendered file into a Pod with the same pod
// spec, and move its hostPath volumes under a scratch directory so that the
// test never touches the host's real /run/shmbroker. ConfigMaps are kept
// (kube play reads them for envFrom); other kinds are dropped. The pod's
// restart policy becomes OnFailure (see below).
// Usage: node daemonset-to-pod.js RENDERED.yaml HOSTPATH_ROOT > pod.yaml
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const modulesDir = path.resolve(process.env.K8S_VALIDATE_MODULES || __dirname);
const YAML = createRequire(path.join(modulesDir, "package.json"))("yaml");

const [input, hostRoot] = process.argv.slice(2);
if (!input || !hostRoot) {
  console.error("usage: daemonset-to-pod.js RENDERED.yaml HOSTPATH_ROOT");
  process.exit(2);
}
const out = [];
for (const doc of YAML.parseAllDocuments(fs.readFileSync(input, "utf8"))) {
  const o = doc.toJS();
  if (!o) continue;
  if (o.kind === "ConfigMap") out.push(o);
  if (o.kind !== "DaemonSet") continue;
  const spec = o.spec.template.spec;
  // podman 4.3 applies the pod's restart policy to init containers too
  // (podman issue 16343): with a DaemonSet's Always, the init container is
  // restarted after it succeeds and kube play fails removing it. OnFailure
  // runs it once, as Kubernetes does.
  spec.restartPolicy = "OnFailure";
  for (const v of spec.volumes || []) {
    if (v.hostPath) v.hostPath.path = path.join(hostRoot, v.hostPath.path);
  }
  out.push({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: o.metadata.name, labels: o.spec.template.metadata.labels },
    spec,
  });
}
if (!out.some((o) => o.kind === "Pod")) {
  console.error(`daemonset-to-pod.js: no DaemonSet in ${input}`);
  process.exit(1);
}
process.stdout.write(out.map((o) => YAML.stringify(o)).join("---\n"));
