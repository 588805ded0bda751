// The part of Microsoft Graph's OpenAPI description that hoist's Entra
// backend uses: its operations, and every component they reach, taken from
// the whole description that odata-openapi3 converted from Graph's CSDL.
//
// Usage: node subset.mjs VERSION CONVERTED.json... --source COMMIT --from FILE
//          --licence LICENCE > OUT.json
//   VERSION is v1.0 or beta; each CONVERTED file is one conversion (several
//   when the roots were converted apart, as /me is, to keep them small);
//   COMMIT and FILE name the CSDL converted, LICENCE is msgraph-metadata's
//   licence text, which goes into the description.
//
// Three things differ from what the converter writes, each because Graph
// itself differs from plain OData there, as its API reference shows:
// - paths address keys as segments (`/requests/{id}`, not `('{id}')`) and
//   call bound functions and actions by their short names
//   (`filterByCurrentUser(on='principal')`, `cancel`), as every example
//   on Graph's reference pages does;
// - an entity's `id` is not required when creating it: Graph assigns it,
//   but the CSDL does not mark the key as computed;
// - nothing else is touched: schemas, enums and responses are as converted.

import { readFileSync } from 'node:fs';

// Each operation: [method, path as the converter writes it (without the
// version)]. Keep in step with src/backend/entra.
const OPERATIONS = {
  'v1.0': [
    ['get', '/me'],
    ['get', '/roleManagement/directory/roleEligibilityScheduleInstances/graph.filterByCurrentUser(on={on})'],
    ['get', '/roleManagement/directory/roleAssignmentScheduleInstances/graph.filterByCurrentUser(on={on})'],
    ['get', '/roleManagement/directory/roleAssignmentScheduleRequests/graph.filterByCurrentUser(on={on})'],
    ['post', '/roleManagement/directory/roleAssignmentScheduleRequests'],
    ['get', "/roleManagement/directory/roleAssignmentScheduleRequests('{id_2}')"],
    ['post', "/roleManagement/directory/roleAssignmentScheduleRequests('{id_2}')/graph.cancel"],
    ['get', '/identityGovernance/privilegedAccess/group/eligibilityScheduleInstances/graph.filterByCurrentUser(on={on})'],
    ['get', '/identityGovernance/privilegedAccess/group/assignmentScheduleInstances/graph.filterByCurrentUser(on={on})'],
    ['get', '/identityGovernance/privilegedAccess/group/assignmentScheduleRequests/graph.filterByCurrentUser(on={on})'],
    ['post', '/identityGovernance/privilegedAccess/group/assignmentScheduleRequests'],
    ['get', "/identityGovernance/privilegedAccess/group/assignmentScheduleRequests('{id_3}')"],
    ['post', "/identityGovernance/privilegedAccess/group/assignmentScheduleRequests('{id_3}')/graph.cancel"],
    ['get', "/identityGovernance/privilegedAccess/group/assignmentApprovals('{id_3}')"],
    ['patch', "/identityGovernance/privilegedAccess/group/assignmentApprovals('{id_3}')/stages('{id_4}')"],
    ['get', '/policies/roleManagementPolicyAssignments'],
  ],
  beta: [
    ['get', "/roleManagement/directory/roleAssignmentApprovals('{id_2}')"],
    ['patch', "/roleManagement/directory/roleAssignmentApprovals('{id_2}')/steps('{id_3}')"],
  ],
};

// Types hoist reads through `@odata.type` where the description names only
// their base: the rules of a role management policy, and who approves.
const DERIVED = {
  'v1.0': [
    'microsoft.graph.unifiedRoleManagementPolicyApprovalRule',
    'microsoft.graph.unifiedRoleManagementPolicyAuthenticationContextRule',
    'microsoft.graph.unifiedRoleManagementPolicyEnablementRule',
    'microsoft.graph.unifiedRoleManagementPolicyExpirationRule',
    'microsoft.graph.unifiedRoleManagementPolicyNotificationRule',
    'microsoft.graph.groupMembers',
    'microsoft.graph.singleUser',
  ],
  beta: [],
};

const positional = [];
const options = {};
for (let args = process.argv.slice(2); args.length; ) {
  const arg = args.shift();
  if (arg.startsWith('--')) options[arg.slice(2)] = args.shift();
  else positional.push(arg);
}
const [version, ...files] = positional;
const wanted = OPERATIONS[version];
if (!wanted || files.length === 0 || !options.source || !options.from || !options.licence) {
  console.error('usage: node subset.mjs v1.0|beta CONVERTED.json... --source COMMIT --from FILE --licence LICENCE');
  process.exit(2);
}
const { source, from } = options;
const licence = readFileSync(options.licence, 'utf8').trim();

const converted = files.map((file) => JSON.parse(readFileSync(file, 'utf8')));
const first = converted[0];

// Graph's path for a converted one.
function graphPath(path) {
  return path
    .replace(/\('\{(\w+)\}'\)/g, '/{$1}')
    .replace(/\/graph\./g, '/')
    .replace(/\((\w+)=\{(\w+)\}\)/g, "($1='{$2}')");
}

const paths = {};
for (const [method, path] of wanted) {
  const item = converted.map((doc) => doc.paths[path]).find(Boolean);
  if (!item?.[method]) {
    console.error(`subset.mjs: ${method.toUpperCase()} ${path} is not in the converted description`);
    process.exit(1);
  }
  const kept = paths[graphPath(path)] ?? {};
  if (item.parameters) kept.parameters = item.parameters;
  kept[method] = item[method];
  paths[graphPath(path)] = kept;
}

// Every component the kept operations reach, followed through $refs.
const components = {};
const pending = [paths, ...DERIVED[version].map((name) => ({ $ref: `#/components/schemas/${name}` }))];
const seen = new Set();
function lookup(ref) {
  const [, kind, name] = ref.match(/^#\/components\/(\w+)\/(.+)$/) ?? [];
  if (!kind) throw new Error(`unexpected $ref ${ref}`);
  const found = converted.map((doc) => doc.components?.[kind]?.[name]).find(Boolean);
  if (!found) throw new Error(`$ref ${ref} names nothing`);
  return [kind, name, found];
}
while (pending.length) {
  const node = pending.pop();
  if (Array.isArray(node)) {
    pending.push(...node);
  } else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string' && !seen.has(value)) {
        seen.add(value);
        const [kind, name, component] = lookup(value);
        (components[kind] ??= {})[name] = component;
        pending.push(component);
      } else {
        pending.push(value);
      }
    }
  }
}

// Graph assigns ids: a new entity is created without one.
for (const [name, schema] of Object.entries(components.schemas ?? {})) {
  if (name.endsWith('-create') && Array.isArray(schema.required)) {
    schema.required = schema.required.filter((field) => field !== 'id');
    if (schema.required.length === 0) delete schema.required;
  }
}

const sorted = (object) => Object.fromEntries(Object.entries(object).sort(([a], [b]) => a.localeCompare(b)));
const description = {
  openapi: first.openapi,
  info: {
    title: `Microsoft Graph ${version}: the operations hoist's Entra backend uses`,
    version,
    description:
      `Generated by hoist's scripts/graph-openapi/generate from ${from} of` +
      ` microsoftgraph/msgraph-metadata at commit ${source}, converted by odata-openapi3` +
      " (the OASIS OData TC's converter) and cut down to the operations hoist calls." +
      `\n\nmsgraph-metadata's licence:\n\n${licence}\n`,
  },
  'x-source': { repository: 'microsoftgraph/msgraph-metadata', commit: source, file: from },
  servers: first.servers,
  paths: sorted(paths),
  components: Object.fromEntries(Object.entries(components).map(([kind, entries]) => [kind, sorted(entries)])),
};
process.stdout.write(`${JSON.stringify(description, null, 1)}\n`);
