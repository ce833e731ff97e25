"""Submit operators: upload a document, push the vendor's token or job id."""
