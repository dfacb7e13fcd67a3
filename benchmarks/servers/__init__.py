"""ASGI apps the benchmarks start with uvicorn (one module per server under test)."""
