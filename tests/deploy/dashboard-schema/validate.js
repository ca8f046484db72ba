// Validates Grafana dashboard JSON files against Grafana's own dashboard
// model: the `Dashboard` type that npm @grafana/schema ships, turned into a
// JSON Schema by ts-json-schema-generator and checked with ajv. Properties
// the types do not name (datasource-specific query fields such as `expr`)
// are allowed; known ones must have the right types, enums and required
// fields.
//
// Usage: node validate.js DASHBOARD.json...   (exit 1 if any is invalid)
// Env: DASHBOARD_SCHEMA_MODULES: the directory whose node_modules hold the
// packages (check_dashboard_schema.sh installs them there; default: here).
"use strict";
const path = require("path");
const fs = require("fs");

const modulesDir = path.resolve(
    process.env.DASHBOARD_SCHEMA_MODULES || __dirname, "node_modules");
const tsj = require(path.join(modulesDir, "ts-json-schema-generator"));
const Ajv = require(path.join(modulesDir, "ajv"));

const types = path.join(modulesDir,
    "@grafana/schema/dist/esm/raw/dashboard/x/dashboard_types.gen.d.ts");
const schema = tsj.createGenerator({
  path: types,
  type: "Dashboard",
  skipTypeCheck: true,
  additionalProperties: true,
  expose: "all",
  topRef: true,
}).createSchema("Dashboard");
const validate = new Ajv({allErrors: true, strict: false}).compile(schema);

let failed = false;
for (const file of process.argv.slice(2)) {
  let dashboard;
  try {
    dashboard = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    console.error(`${file}: not JSON: ${e.message}`);
    failed = true;
    continue;
  }
  if (validate(dashboard)) {
    console.log(`${file}: valid (Grafana Dashboard schema)`);
  } else {
    failed = true;
    for (const e of validate.errors) {
      console.error(`${file}: ${e.instancePath || "/"} ${e.message}` +
                    (e.params ? ` ${JSON.stringify(e.params)}` : ""));
    }
  }
}
process.exit(failed ? 1 : 0);
