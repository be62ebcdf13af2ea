"""Head-end system: receives meter deliveries and hands columnar reading batches to the MDMS."""
