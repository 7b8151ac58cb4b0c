// Ingress routing: validation, semantics, the compiled routes section, and route() over the core.
//
// Integration in one place: buildRoutes() turns stored Ingresses + Services into the section bytes; an
// IngressRouter over the core's exports routes requests; the route's frontend goes to select().

import type { Service } from '../k8s/types.js';
import { compileRoutes, type CompileRoutesOptions, type CompiledRoutes } from './compile.js';
import { serviceResolver } from './resolve.js';
import type { IngressPlanResult } from './semantics.js';
import type { IngressStore } from './state.js';

export { validateIngress, isIngressKind } from '../k8s/validate-ingress.js';
export * from './types.js';
export {
  planIngress, prefixKey, compareIngressAge, ingressClassOf, defaultIngressClass,
  type IngressPlan, type HostRoutes, type PathRoute, type RouteTarget, type HostKind, type IgnoredIngress,
  type PathConflict, type IngressPlanResult, type PlanOptions,
} from './semantics.js';
export { serviceResolver, type ResolveServicePort, type ServicePortRef } from './resolve.js';
export { compileRoutes, type CompileRoutesOptions, type CompiledRoutes } from './compile.js';
export { RoutesView, RoutesError, type TargetView, type RecordView, type PathView } from './view.js';
export {
  IngressRouter, RouterError, routerScratchSize, requestPath, hostName, resultsOf, NOT_FOUND,
  type RouteExports, type RouterHost, type RouteRequest, type RouteResult, type RouteTrace, type HostMatch, type PathMatch,
} from './route.js';
export { TableMatcher } from './table-match.js';
export { IngressStore, type IngressKindName } from './state.js';
export { dumpRoutes, formatIngressDump, type IngressDump, type DumpRouteHost, type DumpRoutePath, type DumpRouteTarget } from './dump.js';
export { ROUTE_STRUCT_SIZES } from './layout.js';

export interface BuildRoutesOptions extends CompileRoutesOptions {
  /** The IngressClass served (--ingress-class); default: the default IngressClass. */
  ingressClass?: string;
}

/** Plan + compile: the routes section for the stored Ingresses against the given Services ('ns/name' keys). */
export function buildRoutes(
  store: IngressStore,
  services: ReadonlyMap<string, Service>,
  opts: BuildRoutesOptions = {},
): IngressPlanResult & CompiledRoutes {
  const planned = store.plan({ ingressClass: opts.ingressClass, resolveServicePort: serviceResolver(services) });
  const compiled = compileRoutes(planned.plan, { seed: opts.seed });
  return { ...planned, ...compiled, notes: [...planned.notes, ...compiled.notes] };
}
