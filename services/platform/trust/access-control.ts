import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { getOption, hasOption, type DescMethod } from "@bufbuild/protobuf";
import { access } from "#gen/meshwork/v1/access_pb.js";
import { Health } from "#gen/grpc/health/v1/health_pb.js";
import { actingCustomerKey, callerIdentityKey, CUSTOMER_HEADER } from "./mesh-identity.js";
import { isSafePrincipalId, PRINCIPAL_ID_RULE } from "./principal-id.js";

/** What one method admits, read once from its descriptor. */
interface MethodAccess {
  callers: ReadonlySet<string>;
  actsForCustomer: boolean;
}

/** Reflection answers any verified identity: it describes the contracts, which are no secret inside the mesh. */
const REFLECTION_PACKAGE = "grpc.reflection.";

const admitted = new WeakMap<DescMethod, MethodAccess>();

/** The method's (meshwork.v1.access) option; a method without one admits nobody. */
export function accessOf(method: DescMethod): MethodAccess {
  let found = admitted.get(method);
  if (!found) {
    const option = hasOption(method, access) ? getOption(method, access) : undefined;
    found = { callers: new Set(option?.callers ?? []), actsForCustomer: option?.actsForCustomer ?? false };
    admitted.set(method, found);
  }
  return found;
}

/**
 * Enforces each RPC's contract option on a mesh port: the caller's verified identity (put in
 * the context by the server, from its client certificate) must be one the method names.
 * Health stays open, for probes and load balancers. When the customer agent (the public
 * edge, which verifies customers' tokens) calls a method that acts for a customer, it must
 * name the customer, and only it may name one; without a customer agent, no caller may.
 */
export function createAccessControlInterceptor(options: { customerAgent?: string | undefined } = {}): Interceptor {
  return (next) => (req) => {
    const refusal = refusalOf(req, options.customerAgent);
    return refusal ? Promise.reject(refusal) : next(req);
  };
}

/** Why the call may not go on, if it may not; a customer it names acts for it from here on. */
function refusalOf(req: Parameters<Parameters<Interceptor>[0]>[0], customerAgent: string | undefined): ConnectError | undefined {
  if (req.service.typeName === Health.typeName) return undefined;
  const caller = req.contextValues.get(callerIdentityKey);
  if (caller === undefined) {
    return new ConnectError("this port requires a client certificate from the mesh CA (spiffe://meshwork/<name>)", Code.Unauthenticated);
  }
  if (req.service.typeName.startsWith(REFLECTION_PACKAGE)) return undefined;
  const { callers, actsForCustomer } = accessOf(req.method);
  if (!callers.has(caller)) return new ConnectError(`${caller} may not call ${req.service.typeName}/${req.method.name}`, Code.PermissionDenied);
  const customer = req.header.get(CUSTOMER_HEADER);
  if (customer !== null) {
    if (caller !== customerAgent) {
      const agent = customerAgent === undefined ? "no caller acts for customers here" : `only the ${customerAgent} acts for customers`;
      return new ConnectError(`${agent}; ${caller} may not send ${CUSTOMER_HEADER}`, Code.PermissionDenied);
    }
    if (!isSafePrincipalId(customer)) return new ConnectError(`${CUSTOMER_HEADER}: ${PRINCIPAL_ID_RULE}`, Code.InvalidArgument);
    req.contextValues.set(actingCustomerKey, customer);
  } else if (actsForCustomer && caller === customerAgent) {
    return new ConnectError(`${req.method.name} acts for a customer: the ${customerAgent} must name it in ${CUSTOMER_HEADER}`, Code.PermissionDenied);
  }
  return undefined;
}
