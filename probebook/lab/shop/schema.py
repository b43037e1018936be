"""The shop's databases: one SQLite file per owner, as separate services would have.

inventory.db  products (price column without a declared type, as the legacy import made it),
              stock movements (the ledger; availability is their sum per SKU)
orders.db     orders, order lines, coupons
queue.db      jobs for the worker (fulfilment, price imports)
"""

from __future__ import annotations

__all__ = ["INVENTORY", "ORDERS", "QUEUE", "WAREHOUSES"]

WAREHOUSES = ("ams1", "fra1", "lon1", "mad1", "nyc1", "sfo1")

INVENTORY = """
CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price, weight_g INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS movements (
    id INTEGER PRIMARY KEY, sku TEXT NOT NULL, warehouse TEXT NOT NULL, delta INTEGER NOT NULL,
    reason TEXT NOT NULL, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS idx_movements_sku ON movements (sku);
"""

ORDERS = """
CREATE TABLE IF NOT EXISTS coupons (code TEXT PRIMARY KEY, pct REAL NOT NULL, percent_off INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, total REAL NOT NULL, currency TEXT NOT NULL,
    status TEXT NOT NULL, trace_id TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS order_lines (
    order_id INTEGER NOT NULL, sku TEXT NOT NULL, qty INTEGER NOT NULL, price REAL NOT NULL);
"""

QUEUE = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, available_at REAL NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS idx_jobs_ready ON jobs (status, available_at);
"""
