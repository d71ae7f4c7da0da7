"""A two-model app whose pages make 1, 100 or 1,000 queries on demand."""
