import { Code, type ConnectRouter } from "@connectrpc/connect";
import { createRegistry, toBinary, type DescFile, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as v1 from "#gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "#gen/grpc/reflection/v1alpha/reflection_pb.js";

type Request = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;

/**
 * gRPC server reflection (grpc.reflection.v1, and v1alpha for older tools), answered from
 * the generated descriptors, so grpcurl, Postman and similar tools can list and call the
 * services without the .proto files.
 */
export function createReflectionRoutes(services: readonly DescService[]) {
  const files = new Map<string, DescFile>();
  const collect = (file: DescFile) => {
    // Keyed by the path with ".proto", as requests name files (DescFile.name drops it).
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    file.dependencies.forEach(collect);
  };
  const served = [...services, v1.ServerReflection, v1alpha.ServerReflection];
  served.forEach((service) => collect(service.file));
  const registry = createRegistry(...files.values());

  /** A file and everything it imports, dependencies first, each once. */
  function withDependencies(file: DescFile): Uint8Array[] {
    const ordered: DescFile[] = [];
    const visit = (f: DescFile) => {
      if (ordered.includes(f)) return;
      f.dependencies.forEach(visit);
      ordered.push(f);
    };
    visit(file);
    return ordered.map((f) => toBinary(FileDescriptorProtoSchema, f.proto));
  }

  function fileContaining(symbol: string): DescFile | undefined {
    const direct = registry.get(symbol);
    if (direct && "file" in direct) return direct.file;
    // A method: "pkg.Service.Method".
    const owner = registry.getService(symbol.slice(0, symbol.lastIndexOf(".")));
    return owner?.methods.some((m) => `${owner.typeName}.${m.name}` === symbol) ? owner.file : undefined;
  }

  function answer(req: Request) {
    const request = req.messageRequest;
    const notFound = (what: string) => ({ case: "errorResponse" as const, value: { errorCode: Code.NotFound, errorMessage: `${what} not found` } });
    switch (request.case) {
      case "listServices":
        return { case: "listServicesResponse" as const, value: { service: served.map((s) => ({ name: s.typeName })) } };
      case "fileByFilename": {
        const file = files.get(request.value);
        return file ? { case: "fileDescriptorResponse" as const, value: { fileDescriptorProto: withDependencies(file) } } : notFound(`file ${request.value}`);
      }
      case "fileContainingSymbol": {
        const file = fileContaining(request.value);
        return file ? { case: "fileDescriptorResponse" as const, value: { fileDescriptorProto: withDependencies(file) } } : notFound(`symbol ${request.value}`);
      }
      case "allExtensionNumbersOfType":
        return registry.getMessage(request.value)
          ? { case: "allExtensionNumbersResponse" as const, value: { baseTypeName: request.value, extensionNumber: [] } }
          : notFound(`type ${request.value}`);
      case "fileContainingExtension":
        return notFound("extension"); // the mesh's contracts declare no extensions
      default:
        return { case: "errorResponse" as const, value: { errorCode: Code.InvalidArgument, errorMessage: "message_request: is required" } };
    }
  }

  return (router: ConnectRouter) => {
    router.service(v1.ServerReflection, {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) yield { host: req.host, originalRequest: req, messageResponse: answer(req) };
      },
    });
    router.service(v1alpha.ServerReflection, {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) yield { host: req.host, originalRequest: req, messageResponse: answer(req) };
      },
    });
  };
}
