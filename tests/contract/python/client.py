"""A plain gRPC client in Python (Debian's python3-grpcio), on stubs generated from proto/.
Usage: client.py CONFIG_JSON, where CONFIG_JSON is
  {"stubs": dir, "check": "gateway", "gateway": "host:port", "token": bearer}
  {"stubs": dir, "check": "operator", "pki": {"ca", "cert", "key"}, "order_id", "customer_id",
   "services": {name: {"mesh": "host:port", "ops": "host:port"}}}
Prints one JSON object describing what it saw; the TypeScript test asserts on it."""
import json
import sys
import uuid

config = json.loads(sys.argv[1])
sys.path.insert(0, config["stubs"])

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402
from shop.gateway.v1 import storefront_service_pb2 as storefront, storefront_service_pb2_grpc as storefront_grpc  # noqa: E402
from shop.inventory.v1 import inventory_service_pb2 as inventory, inventory_service_pb2_grpc as inventory_grpc  # noqa: E402
from shop.order.v1 import order_service_pb2 as order, order_service_pb2_grpc as order_grpc  # noqa: E402
from shop.payment.v1 import payment_service_pb2 as payment, payment_service_pb2_grpc as payment_grpc  # noqa: E402
from shop.common.v1 import money_pb2 as money  # noqa: E402
# grpc.health.v1 and grpc.reflection.v1, generated with proto/grpc as the root: under their
# own paths (grpc/...) the stubs would be shadowed by the grpc package itself.
from health.v1 import health_pb2 as health, health_pb2_grpc as health_grpc  # noqa: E402
from reflection.v1 import reflection_pb2 as reflection, reflection_pb2_grpc as reflection_grpc  # noqa: E402

TIMEOUT = 10


def error_of(call):
    try:
        call()
    except grpc.RpcError as err:
        return {"code": err.code().name, "details": err.details()}
    return None


def check_gateway():
    """The public edge: plaintext, with the customer's bearer token."""
    seen = {}
    with grpc.insecure_channel(config["gateway"]) as channel:
        gateway = storefront_grpc.StorefrontServiceStub(channel)
        auth = (("authorization", f"Bearer {config['token']}"),)
        placed = gateway.PlaceOrder(
            storefront.PlaceOrderRequest(items=[order.LineItem(sku="MW-MUG-001", quantity=2)], payment_token="tok_visa", request_id=str(uuid.uuid4())),
            metadata=auth,
            timeout=TIMEOUT,
        )
        details = gateway.GetOrderDetails(storefront.GetOrderDetailsRequest(order_id=placed.order.id), metadata=auth, timeout=TIMEOUT)
        seen["order"] = {"id_matches": details.order.id == placed.order.id, "customer": details.order.customer_id, "total": details.order.total.minor_units}
        seen["bad_input"] = error_of(
            lambda: gateway.PlaceOrder(storefront.PlaceOrderRequest(items=[order.LineItem(sku="MW-MUG-001", quantity=-1)], payment_token="tok_visa", request_id="y"), metadata=auth, timeout=TIMEOUT)
        )
        seen["no_token"] = error_of(lambda: gateway.ListMyOrders(storefront.ListMyOrdersRequest(), timeout=TIMEOUT))
    return seen


def read_pem(path):
    with open(path, "rb") as f:
        return f.read()


def check_operator():
    """Direct calls to the services' mesh ports with the operator certificate, as the README shows."""
    pki = config["pki"]
    ca, cert, key = read_pem(pki["ca"]), read_pem(pki["cert"]), read_pem(pki["key"])
    services = config["services"]

    def mesh_channel(name, client_cert=True, name_override=True):
        credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key if client_cert else None, certificate_chain=cert if client_cert else None)
        # The certificates name localhost as well as 127.0.0.1; the override checks the former.
        options = [("grpc.ssl_target_name_override", "localhost")] if name_override else []
        return grpc.secure_channel(services[name]["mesh"], credentials, options)

    seen = {}
    with mesh_channel("inventory") as channel:
        stub = inventory_grpc.InventoryServiceStub(channel)
        seen["skus"] = [p.sku for p in stub.ListProducts(inventory.ListProductsRequest(), timeout=TIMEOUT).products]
        stock = stub.GetStock(inventory.GetStockRequest(sku="MW-MUG-001"), timeout=TIMEOUT).stock
        seen["stock"] = {"sku": stock.sku, "available_is_positive": stock.available > 0}
        seen["services_by_reflection"], seen["inventory_files"] = reflect(channel)

    with mesh_channel("order") as channel:
        stub = order_grpc.OrderServiceStub(channel)
        read = stub.GetOrder(order.GetOrderRequest(order_id=config["order_id"]), timeout=TIMEOUT)
        listed = stub.ListOrders(order.ListOrdersRequest(customer_id=config["customer_id"]), timeout=TIMEOUT)
        seen["order"] = {"id_matches": read.order.id == config["order_id"], "customer": read.order.customer_id, "listed": [o.id == config["order_id"] for o in listed.orders]}
        seen["order_missing"] = error_of(lambda: stub.GetOrder(order.GetOrderRequest(order_id=str(uuid.uuid4())), timeout=TIMEOUT))
        seen["create_order"] = error_of(
            lambda: stub.CreateOrder(order.CreateOrderRequest(customer_id="py", items=[order.LineItem(sku="MW-MUG-001", quantity=1)], payment_token="tok_visa", request_id=str(uuid.uuid4())), timeout=TIMEOUT)
        )

    with mesh_channel("payment") as channel:
        charge = payment.ChargeRequest(order_id=str(uuid.uuid4()), amount=money.Money(currency_code="USD", minor_units=100), payment_token="tok_visa", idempotency_key=str(uuid.uuid4()))
        seen["charge"] = error_of(lambda: payment_grpc.PaymentServiceStub(channel).Charge(charge, timeout=TIMEOUT))

    seen["health"] = {}
    for name, addresses in services.items():
        with mesh_channel(name) as mesh, grpc.insecure_channel(addresses["ops"]) as ops:
            seen["health"][name] = [health.HealthCheckResponse.ServingStatus.Name(health_grpc.HealthStub(c).Check(health.HealthCheckRequest(), timeout=TIMEOUT).status) for c in (mesh, ops)]

    with mesh_channel("inventory", client_cert=False) as channel:
        seen["no_cert"] = error_of(lambda: inventory_grpc.InventoryServiceStub(channel).ListProducts(inventory.ListProductsRequest(), timeout=TIMEOUT))
        seen["no_cert_reflection"] = error_of(lambda: reflect(channel))
    # Without the override, grpcio checks the certificate against the target's IP address.
    with mesh_channel("inventory", name_override=False) as channel:
        seen["ip_target"] = error_of(lambda: inventory_grpc.InventoryServiceStub(channel).ListProducts(inventory.ListProductsRequest(), timeout=TIMEOUT)) or "OK"
    return seen


def reflect(channel):
    """grpc.reflection.v1, as grpcurl uses it: the services listed, and the files InventoryService needs."""
    requests = [
        reflection.ServerReflectionRequest(list_services=""),
        reflection.ServerReflectionRequest(file_containing_symbol="shop.inventory.v1.InventoryService"),
    ]
    listed, described = list(reflection_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter(requests), timeout=TIMEOUT))
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw).name for raw in described.file_descriptor_response.file_descriptor_proto]
    return sorted(s.name for s in listed.list_services_response.service), files


print(json.dumps({"gateway": check_gateway, "operator": check_operator}[config["check"]]()))
