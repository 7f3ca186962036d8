"""Matrix-free linear algebra on matvec callables."""
