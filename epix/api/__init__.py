"""HTTP faces: FastAPI app, problem+json, dependencies and routers (thin: no domain logic)."""
