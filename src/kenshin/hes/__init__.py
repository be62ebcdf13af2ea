"""Head-end system: authenticates A-route frames, keeps the collection duties' deadlines,
re-reads gaps, runs commands and polls, and hands columnar reading batches to the MDMS."""
