"""Networks (plain ``nn.Module``s) and the Lightning module that trains them."""
