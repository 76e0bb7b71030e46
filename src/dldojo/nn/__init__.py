"""Neural-network building blocks written from their equations and parity-tested against torch.nn."""
