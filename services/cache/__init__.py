"""The cache service: Pod and NetworkAttachmentDefinition informers, status write-back."""
