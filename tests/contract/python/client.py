"""A plain gRPC client in Python (Debian's python3-grpcio), on stubs generated from proto/.
Usage: client.py STUBS_DIR ORDER_ADDR INVENTORY_ADDR GATEWAY_ADDR BEARER_TOKEN
Prints one JSON object describing what it saw; the TypeScript test asserts on it."""
import json
import sys
import uuid

stubs, order_addr, inventory_addr, gateway_addr, token = sys.argv[1:6]
sys.path.insert(0, stubs)

import grpc  # noqa: E402
from shop.gateway.v1 import storefront_service_pb2 as storefront, storefront_service_pb2_grpc as storefront_grpc  # noqa: E402
from shop.inventory.v1 import inventory_service_pb2 as inventory, inventory_service_pb2_grpc as inventory_grpc  # noqa: E402
from shop.order.v1 import order_service_pb2 as order, order_service_pb2_grpc as order_grpc  # noqa: E402


def error_of(call):
    try:
        call()
    except grpc.RpcError as err:
        return {"code": err.code().name, "details": err.details()}
    return None


seen = {}
with grpc.insecure_channel(inventory_addr) as channel:
    products = inventory_grpc.InventoryServiceStub(channel).ListProducts(inventory.ListProductsRequest(), timeout=10)
    seen["skus"] = [p.sku for p in products.products]

with grpc.insecure_channel(order_addr) as channel:
    orders = order_grpc.OrderServiceStub(channel)
    created = orders.CreateOrder(
        order.CreateOrderRequest(customer_id="py", items=[order.LineItem(sku="MW-MUG-001", quantity=2)], payment_token="tok_visa", request_id=str(uuid.uuid4())),
        timeout=10,
    )
    read = orders.GetOrder(order.GetOrderRequest(order_id=created.order.id), timeout=10)
    seen["order"] = {"id_matches": read.order.id == created.order.id, "total": read.order.total.minor_units, "status": order.OrderStatus.Name(read.order.status)}
    seen["order_bad_input"] = error_of(lambda: orders.CreateOrder(order.CreateOrderRequest(customer_id="py", payment_token="tok_visa", request_id="x"), timeout=10))

with grpc.insecure_channel(gateway_addr) as channel:
    gateway = storefront_grpc.StorefrontServiceStub(channel)
    auth = (("authorization", f"Bearer {token}"),)
    placed = gateway.PlaceOrder(
        storefront.PlaceOrderRequest(items=[order.LineItem(sku="MW-STK-003", quantity=1)], payment_token="tok_visa", request_id=str(uuid.uuid4())),
        metadata=auth,
        timeout=10,
    )
    details = gateway.GetOrderDetails(storefront.GetOrderDetailsRequest(order_id=placed.order.id), metadata=auth, timeout=10)
    seen["gateway_order"] = {"id_matches": details.order.id == placed.order.id, "customer": details.order.customer_id}
    seen["gateway_bad_input"] = error_of(
        lambda: gateway.PlaceOrder(storefront.PlaceOrderRequest(items=[order.LineItem(sku="MW-MUG-001", quantity=-1)], payment_token="tok_visa", request_id="y"), metadata=auth, timeout=10)
    )
    seen["gateway_no_token"] = error_of(lambda: gateway.ListMyOrders(storefront.ListMyOrdersRequest(), timeout=10))

print(json.dumps(seen))
