"""CRM write-back adapters (amoCRM/Kommo, Bitrix24); see integrations.crm.base for the contract."""
